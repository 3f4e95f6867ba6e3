//! A full-text search read model on tantivy: checkpointed in the commit payload, idempotent
//! upserts, rebuilt beside the live index and swapped in without downtime.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use annals_core::{Position, RecordedEvent};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::LogMergePolicy;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Document, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{HandlerError, ProjectionError};
use crate::projection::{Checkpoint, Projection};

fn tantivy_err(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::read_model(format!("search index: {e}"))
}

/// What one event does to the index.
#[derive(Debug)]
#[non_exhaustive]
pub enum SearchOp {
    /// Insert or replace the document with this id (`delete_term` + `add_document`).
    Upsert {
        /// The document id (stored in the projector's id field).
        id: String,
        /// The whole document; the id field is set by the runtime.
        doc: TantivyDocument,
    },
    /// Remove the document with this id.
    Delete {
        /// The document id.
        id: String,
    },
}

/// Looks up the current version of a document (including changes not yet committed).
pub type CurrentDoc<'a> = &'a dyn Fn(&str) -> Option<TantivyDocument>;

/// Maps events to index operations.
pub trait SearchProjector: Send + Sync + 'static {
    /// The projection's name.
    fn name(&self) -> &str;
    /// The projection's version: bump it (or change the schema) to rebuild.
    fn version(&self) -> u32 {
        1
    }
    /// The schema. It must have a `STRING | STORED` field named [`SearchProjector::id_field`].
    fn schema(&self) -> Schema;
    /// The name of the id field.
    fn id_field(&self) -> &str {
        "id"
    }
    /// Fields searched when a query names none.
    fn default_fields(&self) -> Vec<String>;
    /// What `event` does to the index; `current` returns a document as it stands now.
    ///
    /// # Errors
    /// Any error (or a message: `Err("...".into())`); the runtime retries, then parks or
    /// stops by policy.
    fn map(
        &self,
        event: &RecordedEvent,
        current: CurrentDoc<'_>,
    ) -> Result<Vec<SearchOp>, HandlerError>;
}

/// Options of the search read model.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SearchConfig {
    /// Commit after this many events ...
    pub commit_every_events: usize,
    /// ... or this long after the first uncommitted one, whichever comes first.
    pub commit_every: Duration,
    /// The index writer's memory budget in bytes (at least 15 MB per thread).
    pub memory_budget: usize,
    /// Indexing threads (1 suits small machines).
    pub threads: usize,
    /// Decompressed document-store blocks each segment reader caches (tantivy's default is
    /// 100 per segment; the soak showed that as memory growing with the segment count).
    pub doc_cache_blocks: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            commit_every_events: 10_000,
            commit_every: Duration::from_millis(100),
            memory_budget: 64 * 1024 * 1024,
            threads: 1,
            doc_cache_blocks: 8,
        }
    }
}

impl SearchConfig {
    /// Sets how many events make a commit due.
    pub fn commit_every_events(mut self, commit_every_events: usize) -> Self {
        self.commit_every_events = commit_every_events;
        self
    }

    /// Sets how long after the first uncommitted event a commit is due.
    pub fn commit_every(mut self, commit_every: Duration) -> Self {
        self.commit_every = commit_every;
        self
    }

    /// Sets the index writer's memory budget in bytes.
    pub fn memory_budget(mut self, memory_budget: usize) -> Self {
        self.memory_budget = memory_budget;
        self
    }

    /// Sets the number of indexing threads.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets how many document-store blocks each segment reader caches.
    pub fn doc_cache_blocks(mut self, doc_cache_blocks: usize) -> Self {
        self.doc_cache_blocks = doc_cache_blocks;
        self
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Hit {
    /// The document id.
    pub id: String,
    /// The relevance score.
    pub score: f32,
    /// The stored fields, as JSON values (a list per field).
    pub fields: BTreeMap<String, serde_json::Value>,
    /// An HTML snippet of the first default field that matched, matched terms in `<b>`.
    pub snippet: String,
}

/// A range filter on a `u64` fast field: `min ..= max`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FastFilter {
    /// The field name.
    pub field: String,
    /// Lowest value included.
    pub min: u64,
    /// Highest value included.
    pub max: u64,
}

impl FastFilter {
    /// Documents whose `field` is in `min ..= max`.
    pub fn new(field: impl Into<String>, min: u64, max: u64) -> Self {
        Self {
            field: field.into(),
            min,
            max,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    position: u64,
    version: u32,
}

/// The checkpoint in an index commit's payload.
pub(crate) fn decode_payload(payload: &str) -> Result<Checkpoint, ProjectionError> {
    let p: Payload = serde_json::from_str(payload).map_err(tantivy_err)?;
    Ok(Checkpoint {
        position: Position(p.position),
        version: p.version,
    })
}

/// One on-disk copy of the index.
struct Generation {
    number: u64,
    index: Index,
    reader: IndexReader,
}

impl Generation {
    fn open(
        base: &Path,
        number: u64,
        schema: &Schema,
        doc_cache_blocks: usize,
    ) -> Result<Self, ProjectionError> {
        let dir = base.join(format!("gen-{number}"));
        std::fs::create_dir_all(&dir).map_err(tantivy_err)?;
        let mmap = MmapDirectory::open(&dir).map_err(tantivy_err)?;
        let index = Index::open_or_create(mmap, schema.clone()).map_err(tantivy_err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .doc_store_cache_num_blocks(doc_cache_blocks)
            .try_into()
            .map_err(tantivy_err)?;
        Ok(Self {
            number,
            index,
            reader,
        })
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        let metas = self.index.load_metas().map_err(tantivy_err)?;
        metas.payload.as_deref().map(decode_payload).transpose()
    }
}

struct Live {
    generation: Arc<Generation>,
}

/// A query handle on the live index (cheap to clone). After a rebuild it follows the new
/// index; while a rebuild runs it keeps answering from the old one.
#[derive(Clone)]
pub struct SearchIndex {
    live: Arc<RwLock<Live>>,
    schema: Schema,
    id_field: Field,
    default_fields: Vec<Field>,
    /// The scratch directory of an index built by [`SearchProjection::as_of`], removed with
    /// the last handle.
    _scratch: Option<Arc<Scratch>>,
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, ProjectionError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "annals-search-as-of-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).map_err(tantivy_err)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a scratch index");
        }
    }
}

impl SearchIndex {
    fn generation(&self) -> Arc<Generation> {
        Arc::clone(
            &self
                .live
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .generation,
        )
    }

    fn parse(
        &self,
        generation: &Generation,
        query: &str,
    ) -> Result<Box<dyn Query>, ProjectionError> {
        let parser = QueryParser::for_index(&generation.index, self.default_fields.clone());
        parser
            .parse_query(query)
            .map_err(|e| ProjectionError::Query {
                query: query.to_owned(),
                reason: e.to_string(),
            })
    }

    fn with_filters(
        &self,
        query: Box<dyn Query>,
        filters: &[FastFilter],
    ) -> Result<Box<dyn Query>, ProjectionError> {
        if filters.is_empty() {
            return Ok(query);
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, query)];
        for f in filters {
            let field = self
                .schema
                .get_field(&f.field)
                .map_err(|_| ProjectionError::Query {
                    query: f.field.clone(),
                    reason: "no such field".into(),
                })?;
            let range = RangeQuery::new(
                Bound::Included(Term::from_field_u64(field, f.min)),
                Bound::Included(Term::from_field_u64(field, f.max)),
            );
            clauses.push((Occur::Must, Box::new(range)));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// The best `limit` documents for `query` (tantivy's query syntax over the default
    /// fields: `words`, `field:word`, `"a phrase"`, `a AND b`, `-word`, ...).
    ///
    /// # Errors
    /// [`ProjectionError::Query`] for a malformed query; index errors.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>, ProjectionError> {
        self.search_filtered(query, &[], limit)
    }

    /// [`SearchIndex::search`] restricted by ranges on `u64` fast fields.
    ///
    /// # Errors
    /// As [`SearchIndex::search`], or an unknown filter field.
    pub fn search_filtered(
        &self,
        query: &str,
        filters: &[FastFilter],
        limit: usize,
    ) -> Result<Vec<Hit>, ProjectionError> {
        let generation = self.generation();
        let parsed = self.parse(&generation, query)?;
        let query = self.with_filters(parsed.box_clone(), filters)?;
        let searcher = generation.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(tantivy_err)?;
        let mut snippets = Vec::with_capacity(self.default_fields.len());
        for f in &self.default_fields {
            snippets.push(SnippetGenerator::create(&searcher, &*parsed, *f).map_err(tantivy_err)?);
        }
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top.into_iter().take(limit) {
            let doc: TantivyDocument = searcher.doc(address).map_err(tantivy_err)?;
            let id = doc
                .get_first(self.id_field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let fields = match serde_json::from_str::<serde_json::Value>(&doc.to_json(&self.schema))
            {
                Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
                _ => BTreeMap::new(),
            };
            // The first default field with a match gives the snippet.
            let snippet = snippets
                .iter()
                .map(|g| g.snippet_from_doc(&doc))
                .find(|s| !s.highlighted().is_empty())
                .map(|s| s.to_html())
                .unwrap_or_default();
            hits.push(Hit {
                id,
                score,
                fields,
                snippet,
            });
        }
        Ok(hits)
    }

    /// How many documents match `query`.
    ///
    /// # Errors
    /// As [`SearchIndex::search`].
    pub fn count(&self, query: &str) -> Result<usize, ProjectionError> {
        let generation = self.generation();
        let query = self.parse(&generation, query)?;
        generation
            .reader
            .searcher()
            .search(&query, &Count)
            .map_err(tantivy_err)
    }

    /// How many documents the index holds.
    pub fn num_docs(&self) -> u64 {
        self.generation().reader.searcher().num_docs()
    }

    /// The stored document with this id, if any (committed state).
    ///
    /// # Errors
    /// Index errors.
    pub fn get(&self, id: &str) -> Result<Option<TantivyDocument>, ProjectionError> {
        lookup(&self.generation(), self.id_field, id)
    }
}

fn lookup(
    generation: &Generation,
    id_field: Field,
    id: &str,
) -> Result<Option<TantivyDocument>, ProjectionError> {
    let searcher = generation.reader.searcher();
    let q = TermQuery::new(
        Term::from_field_text(id_field, id),
        IndexRecordOption::Basic,
    );
    let top = searcher
        .search(&q, &TopDocs::with_limit(1).order_by_score())
        .map_err(tantivy_err)?;
    match top.first() {
        Some((_, address)) => Ok(Some(searcher.doc(*address).map_err(tantivy_err)?)),
        None => Ok(None),
    }
}

/// The search read model as a [`Projection`]: run it in a
/// [`ProjectionRunner`](crate::ProjectionRunner) (`open` a directory), query it through
/// [`SearchIndex`], or build it as of a position in one call ([`SearchProjection::as_of`]).
///
/// ```
/// use annals_core::{EventData, EventStore, ExpectedVersion, RecordedEvent, StreamId};
/// use annals_projections::tantivy::schema::{STORED, STRING, Schema, TEXT};
/// use annals_projections::tantivy::TantivyDocument;
/// use annals_projections::*;
///
/// /// Notes by their text: one document per stream.
/// struct Notes;
/// impl SearchProjector for Notes {
///     fn name(&self) -> &str { "notes" }
///     fn schema(&self) -> Schema {
///         let mut b = Schema::builder();
///         b.add_text_field("id", STRING | STORED);
///         b.add_text_field("text", TEXT | STORED);
///         b.build()
///     }
///     fn default_fields(&self) -> Vec<String> { vec!["text".into()] }
///     fn map(&self, e: &RecordedEvent, _current: CurrentDoc<'_>) -> Result<Vec<SearchOp>, HandlerError> {
///         let text: String = e.decode()?;
///         let mut doc = TantivyDocument::default();
///         doc.add_text(self.schema().get_field("text")?, &text);
///         Ok(vec![SearchOp::Upsert { id: e.stream.to_string(), doc }])
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = annals_store::MemStore::new();
/// for (note, text) in [("note-1", "buy milk"), ("note-2", "call the plumber about the sink")] {
///     let data = EventData::json("Written", &text)?;
///     store.append(&StreamId::new(note)?, ExpectedVersion::Any, vec![data]).await?;
/// }
/// let index = SearchProjection::as_of(&store, Notes, store.head_position(), SearchConfig::default()).await?;
/// let hits = index.search("plumber", 10)?;
/// assert_eq!(hits[0].id, "note-2");
/// assert!(hits[0].snippet.contains("<b>plumber</b>"));
/// # Ok(()) }
/// ```
pub struct SearchProjection<P: SearchProjector> {
    projector: P,
    base: PathBuf,
    config: SearchConfig,
    handle: SearchIndex,
    /// The generation being written (the live one, or a rebuild's).
    writing: Arc<Generation>,
    /// Shared with the blocking task that commits (a commit must not block an executor
    /// thread); uncontended otherwise.
    writer: Arc<Mutex<IndexWriter>>,
    pending: HashMap<String, Option<TantivyDocument>>,
    uncommitted: usize,
    first_uncommitted: Option<Instant>,
    applied: Position,
    committed: Position,
}

fn lock_writer(writer: &Mutex<IndexWriter>) -> MutexGuard<'_, IndexWriter> {
    // A panic while holding the lock leaves the writer as tantivy left it: usable, and what
    // it had not committed is replayed from the checkpoint anyway.
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs blocking index work (commits, reader reloads, directory removal) off the executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProjectionError> + Send + 'static,
) -> Result<T, ProjectionError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| tantivy_err(format!("index task failed: {e}")))?
}

/// The search index stored under `base` (the directory given to [`SearchProjection::open`]):
/// its generation and the checkpoint of its last commit, or `None` when there is no index.
/// Opens the index read-only, so it works beside a running projection: for tools that
/// report on read models.
///
/// # Errors
/// An index that cannot be read, or an undecodable checkpoint.
pub fn search_checkpoint(
    base: impl AsRef<Path>,
) -> Result<Option<(u64, Option<Checkpoint>)>, ProjectionError> {
    let base = base.as_ref();
    let Some(number) = read_current(base) else {
        return Ok(None);
    };
    let dir = base.join(format!("gen-{number}"));
    if !dir.join("meta.json").exists() {
        return Ok(Some((number, None)));
    }
    let index =
        Index::open(MmapDirectory::open(&dir).map_err(tantivy_err)?).map_err(tantivy_err)?;
    let metas = index.load_metas().map_err(tantivy_err)?;
    let checkpoint = metas.payload.as_deref().map(decode_payload).transpose()?;
    Ok(Some((number, checkpoint)))
}

fn current_file(base: &Path) -> PathBuf {
    base.join("CURRENT")
}

fn read_current(base: &Path) -> Option<u64> {
    std::fs::read_to_string(current_file(base))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The generation after `number` (read from disk): an error rather than a wrap at the end.
fn next_generation(number: u64) -> Result<u64, ProjectionError> {
    number
        .checked_add(1)
        .ok_or_else(|| tantivy_err(format!("generation number {number} cannot grow")))
}

/// Points `CURRENT` at `number` atomically (write, fsync, rename, fsync the directory).
fn write_current(base: &Path, number: u64) -> Result<(), ProjectionError> {
    let tmp = base.join("CURRENT.tmp");
    std::fs::write(&tmp, number.to_string()).map_err(tantivy_err)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(tantivy_err)?;
    std::fs::rename(&tmp, current_file(base)).map_err(tantivy_err)?;
    std::fs::File::open(base)
        .and_then(|f| f.sync_all())
        .map_err(tantivy_err)?;
    Ok(())
}

impl<P: SearchProjector> SearchProjection<P> {
    /// Opens (or creates) the index of `projector` under directory `base`.
    ///
    /// # Errors
    /// [`ProjectionError::ReadModel`] when the schema lacks the id field or the index cannot
    /// be opened.
    pub fn open(
        projector: P,
        base: impl AsRef<Path>,
        config: SearchConfig,
    ) -> Result<Self, ProjectionError> {
        let base = base.as_ref().to_path_buf();
        std::fs::create_dir_all(&base).map_err(tantivy_err)?;
        let schema = projector.schema();
        let id_field = schema.get_field(projector.id_field()).map_err(|_| {
            tantivy_err(format!("schema has no id field {:?}", projector.id_field()))
        })?;
        let mut default_fields = Vec::new();
        for name in projector.default_fields() {
            default_fields.push(
                schema
                    .get_field(&name)
                    .map_err(|_| tantivy_err(format!("no default field {name:?}")))?,
            );
        }
        let number = match read_current(&base) {
            Some(n) => n,
            None => {
                write_current(&base, 1)?;
                1
            }
        };
        // A stored index of another schema cannot be opened with this one: start a new
        // generation (empty, so the runner rebuilds it from the start).
        let generation = match Generation::open(&base, number, &schema, config.doc_cache_blocks) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the search index; starting a new one");
                let g = Generation::open(
                    &base,
                    next_generation(number)?,
                    &schema,
                    config.doc_cache_blocks,
                )?;
                write_current(&base, g.number)?;
                g
            }
        };
        let generation = Arc::new(generation);
        remove_other_generations(&base, generation.number);
        let writer = Self::writer_for(&generation, &config)?;
        let committed = generation
            .checkpoint()?
            .map_or(Position::NONE, |c| c.position);
        let handle = SearchIndex {
            _scratch: None,
            live: Arc::new(RwLock::new(Live {
                generation: Arc::clone(&generation),
            })),
            schema,
            id_field,
            default_fields,
        };
        Ok(Self {
            projector,
            base,
            config,
            handle,
            writing: generation,
            writer: Arc::new(Mutex::new(writer)),
            pending: HashMap::new(),
            uncommitted: 0,
            first_uncommitted: None,
            applied: committed,
            committed,
        })
    }

    fn writer_for(
        generation: &Generation,
        config: &SearchConfig,
    ) -> Result<IndexWriter, ProjectionError> {
        let threads = config.threads.max(1);
        let budget = config.memory_budget.max(15_000_000 * threads);
        let writer: IndexWriter = generation
            .index
            .writer_with_num_threads(threads, budget)
            .map_err(tantivy_err)?;
        let mut policy = LogMergePolicy::default();
        policy.set_del_docs_ratio_before_merge(0.3);
        writer.set_merge_policy(Box::new(policy));
        Ok(writer)
    }

    /// The query handle.
    pub fn index(&self) -> SearchIndex {
        self.handle.clone()
    }

    /// The index of `projector` as it stood at `position` (the store's head at most): built
    /// from the log into a scratch directory, which goes with the last clone of the returned
    /// handle. One call for "search as of", beside the live index.
    ///
    /// # Errors
    /// As [`SearchProjection::open`], and the store's or the projector's errors.
    pub async fn as_of<S: annals_core::EventStore>(
        store: &S,
        projector: P,
        position: Position,
        config: SearchConfig,
    ) -> Result<SearchIndex, ProjectionError> {
        let scratch = Scratch::new()?;
        let base = scratch.0.clone();
        let mut projection =
            blocking(move || SearchProjection::open(projector, base, config)).await?;
        crate::runner::project_until(store, &mut projection, position, 1000).await?;
        projection.commit().await?;
        let mut index = projection.index();
        index._scratch = Some(Arc::new(scratch));
        // Dropping the writer waits for its threads: off the executor.
        blocking(move || {
            drop(projection);
            Ok(())
        })
        .await?;
        Ok(index)
    }

    fn id_term(&self, id: &str) -> Term {
        Term::from_field_text(self.handle.id_field, id)
    }

    /// Commits what was applied, with the checkpoint in the commit's payload, and reloads the
    /// reader, on a blocking thread.
    async fn commit_now(&mut self) -> Result<(), ProjectionError> {
        let payload = serde_json::to_string(&Payload {
            position: self.applied.0,
            version: self.projector.version(),
        })
        .map_err(tantivy_err)?;
        let writer = Arc::clone(&self.writer);
        let generation = Arc::clone(&self.writing);
        blocking(move || {
            let mut writer = lock_writer(&writer);
            let mut prepared = writer.prepare_commit().map_err(tantivy_err)?;
            prepared.set_payload(&payload);
            prepared.commit().map_err(tantivy_err)?;
            generation.reader.reload().map_err(tantivy_err)
        })
        .await?;
        self.pending.clear();
        self.uncommitted = 0;
        self.first_uncommitted = None;
        self.committed = self.applied;
        Ok(())
    }
}

fn remove_other_generations(base: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("gen-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if n != keep
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(error = %e, generation = n, "cannot remove an old search index");
        }
    }
}

#[async_trait]
impl<P: SearchProjector> Projection for SearchProjection<P> {
    fn name(&self) -> &str {
        self.projector.name()
    }

    fn version(&self) -> u32 {
        self.projector.version()
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        self.writing.checkpoint()
    }

    async fn apply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError> {
        for e in events {
            let ops = {
                let pending = &self.pending;
                let generation = &self.writing;
                let id_field = self.handle.id_field;
                // A failed lookup is an error of the batch, not "no document".
                let failed: std::cell::RefCell<Option<ProjectionError>> = Default::default();
                let current = |id: &str| -> Option<TantivyDocument> {
                    match pending.get(id) {
                        Some(doc) => doc.clone(),
                        None => lookup(generation, id_field, id).unwrap_or_else(|e| {
                            failed.borrow_mut().get_or_insert(e);
                            None
                        }),
                    }
                };
                let ops = self
                    .projector
                    .map(e, &current)
                    .map_err(|err| ProjectionError::handler_caused(e.position, err));
                if let Some(e) = failed.into_inner() {
                    return Err(e);
                }
                ops?
            };
            let writer = lock_writer(&self.writer);
            for op in ops {
                match op {
                    SearchOp::Upsert { id, mut doc } => {
                        writer.delete_term(self.id_term(&id));
                        if doc.get_first(self.handle.id_field).is_none() {
                            doc.add_text(self.handle.id_field, &id);
                        }
                        writer.add_document(doc.clone()).map_err(tantivy_err)?;
                        self.pending.insert(id, Some(doc));
                    }
                    SearchOp::Delete { id } => {
                        writer.delete_term(self.id_term(&id));
                        self.pending.insert(id, None);
                    }
                }
            }
        }
        self.applied = checkpoint.position;
        self.uncommitted += events.len();
        let first = *self.first_uncommitted.get_or_insert_with(Instant::now);
        if events.is_empty()
            || self.uncommitted >= self.config.commit_every_events
            || first.elapsed() >= self.config.commit_every
        {
            self.commit_now().await?;
        }
        Ok(())
    }

    async fn clear(&mut self) -> Result<(), ProjectionError> {
        // Build the new index beside the live one; queries keep using the live one.
        let schema = self.handle.schema.clone();
        let number = next_generation(self.writing.number.max(self.handle.generation().number))?;
        let (base, config) = (self.base.clone(), self.config.clone());
        let (generation, writer) = blocking(move || {
            let _ = std::fs::remove_dir_all(base.join(format!("gen-{number}")));
            let generation = Arc::new(Generation::open(
                &base,
                number,
                &schema,
                config.doc_cache_blocks,
            )?);
            let writer = Self::writer_for(&generation, &config)?;
            Ok((generation, writer))
        })
        .await?;
        self.writer = Arc::new(Mutex::new(writer));
        self.writing = generation;
        self.pending.clear();
        self.uncommitted = 0;
        self.first_uncommitted = None;
        self.applied = Position::NONE;
        self.committed = Position::NONE;
        Ok(())
    }

    fn visible(&self) -> Option<Position> {
        Some(self.committed)
    }

    fn commit_interval(&self) -> Option<Duration> {
        Some(self.config.commit_every)
    }

    async fn commit(&mut self) -> Result<(), ProjectionError> {
        if self.committed < self.applied {
            self.commit_now().await?;
        }
        Ok(())
    }

    async fn rebuilt(&mut self) -> Result<(), ProjectionError> {
        self.commit_now().await?;
        let live = self.handle.generation();
        if live.number == self.writing.number {
            return Ok(());
        }
        let (base, number) = (self.base.clone(), self.writing.number);
        blocking(move || write_current(&base, number)).await?;
        self.handle
            .live
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .generation = Arc::clone(&self.writing);
        drop(live);
        let (base, number) = (self.base.clone(), self.writing.number);
        blocking(move || {
            remove_other_generations(&base, number);
            Ok(())
        })
        .await?;
        tracing::info!(
            generation = self.writing.number,
            "rebuilt search index swapped in"
        );
        Ok(())
    }
}
