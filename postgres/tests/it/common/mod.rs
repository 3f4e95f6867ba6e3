//! The test harness for the local PostgreSQL server (127.0.0.1:5432, database `test`, trust
//! auth): every store in a fresh schema, dropped afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use annals_conformance::Harness;
use annals_postgres::{PgConfig, PgStore};

pub(crate) const CONNECT: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A store in a fresh schema, dropped with the harness.
#[derive(Default)]
pub(crate) struct Pg {
    pub(crate) schema: Option<String>,
}

impl Harness for Pg {
    type Store = PgStore;
    async fn fresh(&mut self) -> PgStore {
        let schema = format!(
            "annals_t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.schema = Some(schema.clone());
        let store = PgStore::open(PgConfig::new(CONNECT, &schema))
            .await
            .unwrap();
        store.drop_schema().await.unwrap();
        PgStore::open(PgConfig::new(CONNECT, schema)).await.unwrap()
    }
    async fn reopen(&mut self, store: PgStore) -> PgStore {
        drop(store);
        PgStore::open(PgConfig::new(CONNECT, self.schema.clone().unwrap()))
            .await
            .unwrap()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            // Best effort: a fresh connection on a throwaway runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok((client, conn)) = tokio_postgres_connect().await {
                        let task = tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .await;
                        drop(client);
                        let _ = task.await;
                    }
                });
            })
            .join();
        }
    }
}

async fn tokio_postgres_connect() -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    tokio_postgres::connect(CONNECT, tokio_postgres::NoTls).await
}
