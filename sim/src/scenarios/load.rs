//! Client load on the compute's Postgres: sessions from the control-plane
//! side running short queries while the scenario reconfigures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::driver;
use crate::names::{COMPUTE, PG_PORT, SUPERUSER};

/// Stops the load when dropped.
pub struct Load(Arc<AtomicBool>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts `sessions` client sessions running `SELECT 1` every few ms.
pub fn start(sessions: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..sessions {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = session(&stop, i).await;
                driver::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    Load(stop)
}

async fn session(stop: &AtomicBool, i: usize) -> Result<(), tokio_postgres::Error> {
    let Ok(stream) = turmoil::net::TcpStream::connect((COMPUTE, PG_PORT)).await else {
        return Ok(());
    };
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(SUPERUSER)
        .dbname("postgres")
        .application_name("load");
    let (client, conn) = cfg.connect_raw(stream, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    while !stop.load(Ordering::Relaxed) {
        client.simple_query("SELECT 1").await?;
        driver::sleep(Duration::from_millis(20 + 7 * (i as u64 % 3))).await;
    }
    Ok(())
}
