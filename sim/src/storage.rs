//! The `storage` host: a stand-in for the pageserver that serves base
//! backups over turmoil TCP (so a crashed or partitioned storage makes
//! `pg_basebackup` fail for real).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::procs::STORAGE_PORT;
use crate::shared::Shared;

/// Serves base backups until the host is stopped.
pub async fn serve(shared: Shared) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", STORAGE_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            // One answer per request line (the client re-sends requests
            // that a partition swallowed).
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() != "BASEBACKUP" {
                    return;
                }
                shared.lock().basebackups += 1;
                if w.write_all(b"OK 0/16B3748\n").await.is_err() {
                    return;
                }
            }
        });
    }
}
