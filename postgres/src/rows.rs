//! Reading rows: typed column access and the event row layout.

use annals_core::{
    AppendMarks, CodecId, Error, EventData, EventId, Metadata, Position, RecordedEvent, Result,
    StreamId, Timestamp, Version,
};
use tokio_postgres::Row;

/// A driver error as the store's storage error: PostgreSQL's message, its SQLSTATE as the
/// error's `code`, the driver's error as its source.
pub(crate) fn pg(e: tokio_postgres::Error) -> Error {
    let (message, code) = match e.as_db_error() {
        Some(db) => (
            format!("postgres: {} ({})", db.message(), db.code().code()),
            Some(db.code().code().to_owned()),
        ),
        None => (format!("postgres: {e}"), None),
    };
    Error::Storage {
        message,
        code,
        source: Some(std::sync::Arc::new(e)),
    }
}

/// Column `i` of `row` as `T`: a typed error, not `Row::get`'s panic, when the table does not
/// hold what this build expects (another schema version, a hand-edited table).
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(pg)
}

/// A BIGINT column holding a position or a version as a `u64`: a negative value (which no
/// writer stores) is corrupt, not a number wrapped past `u64::MAX / 2`.
pub(crate) fn count_col(row: &Row, i: usize) -> Result<u64> {
    let v: i64 = col(row, i)?;
    u64::try_from(v).map_err(|_| {
        Error::corrupt(
            Position::NONE,
            format!(
                "negative number {v} in column {}",
                row.columns().get(i).map_or("?", |c| c.name())
            ),
        )
    })
}

/// The columns of `events`, in the order [`to_event`] reads them.
pub(crate) const COLUMNS: &str = "position, stream, version, id, event_type, schema_version, recorded_at, correlation_id, causation_id, headers, codec, payload";

/// One `events` row (selected with [`COLUMNS`]) as a recorded event.
pub(crate) fn to_event(row: &Row) -> Result<RecordedEvent> {
    let position = Position(count_col(row, 0)?);
    let corrupt = |what: &str| Error::corrupt(position, what.to_owned());
    let stream = StreamId::new(col::<String>(row, 1)?).map_err(|_| corrupt("invalid stream id"))?;
    let headers: serde_json::Value = col(row, 9)?;
    let headers = serde_json::from_value(headers).map_err(|_| corrupt("invalid headers"))?;
    let codec: i16 = col(row, 10)?;
    Ok(RecordedEvent::new(
        position,
        stream,
        Version(count_col(row, 2)?),
        Timestamp(col(row, 6)?),
        EventData::new(
            EventId::from_uuid(col(row, 3)?),
            col::<String>(row, 4)?,
            col::<i32>(row, 5)? as u32,
            CodecId(u8::try_from(codec).map_err(|_| corrupt("invalid codec"))?),
            Metadata::new()
                .correlated(col(row, 7)?)
                .caused_by(col(row, 8)?)
                .with_headers(headers),
            col(row, 11)?,
        ),
    ))
}

/// The `append_mark` column of an append's `i`-th of `n` events: bit 1 first, bit 2 last.
pub(crate) fn mark_column(marks: AppendMarks) -> i16 {
    i16::from(marks.first) | (i16::from(marks.last) << 1)
}

/// An `append_mark` column read back; `None` for rows written before it existed.
pub(crate) fn marks_of(column: Option<i16>) -> Option<AppendMarks> {
    column.map(|m| AppendMarks::new(m & 1 != 0, m & 2 != 0))
}
