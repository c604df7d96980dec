//! PostgreSQL for berth replicas (`berth bench --replicas N`): one
//! throwaway cluster started by the bench (the test kit's, on a Unix socket
//! in the work directory: no TCP port), a fresh database per scenario and
//! server, so replicas of one server share their metadata as a deployment
//! behind a load balancer does.

use std::sync::Arc;

use anyhow::anyhow;
use berth_testkit::Postgres;

/// The running cluster.
#[derive(Clone)]
pub struct Database {
    pg: Arc<Postgres>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("socket_dir", &self.pg.socket_dir())
            .finish()
    }
}

impl Database {
    /// Initialises and starts a cluster.
    pub fn start() -> anyhow::Result<Database> {
        let pg = Postgres::try_start().map_err(|e| anyhow!("starting PostgreSQL: {e}"))?;
        Ok(Database { pg: Arc::new(pg) })
    }

    /// Creates database `name` (letters, digits and `_`) and returns its URL.
    pub fn create(&self, name: &str) -> String {
        self.pg.create_database(name)
    }
}
