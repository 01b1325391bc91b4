//! The Postgres v3 wire protocol, server side: just what tokio-postgres'
//! `connect_raw` (trust auth), `simple_query` and `close` need.

use std::collections::BTreeMap;
use std::io;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PROTOCOL_V3: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// What a client opened the session with.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    pub params: BTreeMap<String, String>,
}

/// A message from the client after startup.
#[derive(Debug)]
pub enum Frontend {
    Query(String),
    Terminate,
    /// Anything else (extended protocol, copy, ...), by type byte.
    Unsupported(u8),
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads the startup packet, refusing SSL/GSS requests (`N`) on the way.
/// `Ok(None)` is a cancel request (we just close).
pub async fn read_startup<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> io::Result<Option<Startup>> {
    loop {
        let len = s.read_i32().await?;
        if !(8..=10_000).contains(&len) {
            return Err(invalid("bad startup packet length"));
        }
        let code = s.read_i32().await?;
        let mut body = vec![0; usize::try_from(len - 8).unwrap_or(0)];
        s.read_exact(&mut body).await?;
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                s.write_all(b"N").await?;
                continue;
            }
            CANCEL_REQUEST => return Ok(None),
            PROTOCOL_V3 => {
                let mut params = BTreeMap::new();
                let mut parts = body.split(|b| *b == 0);
                while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
                    if k.is_empty() {
                        break;
                    }
                    params.insert(
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    );
                }
                return Ok(Some(Startup { params }));
            }
            _ => return Err(invalid("unsupported protocol version")),
        }
    }
}

/// Reads one message after startup.
pub async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Frontend> {
    let tag = s.read_u8().await?;
    let len = s.read_i32().await?;
    if !(4..=64 * 1024 * 1024).contains(&len) {
        return Err(invalid("bad message length"));
    }
    let mut body = vec![0; usize::try_from(len - 4).unwrap_or(0)];
    s.read_exact(&mut body).await?;
    Ok(match tag {
        b'Q' => {
            if body.last() == Some(&0) {
                body.pop();
            }
            Frontend::Query(String::from_utf8_lossy(&body).into_owned())
        }
        b'X' => Frontend::Terminate,
        other => Frontend::Unsupported(other),
    })
}

/// Buffers backend messages; `flush` sends them.
#[derive(Default)]
pub struct Out {
    buf: BytesMut,
}

impl Out {
    fn msg(&mut self, tag: u8, body: impl FnOnce(&mut BytesMut)) {
        self.buf.put_u8(tag);
        let at = self.buf.len();
        self.buf.put_i32(0);
        body(&mut self.buf);
        let len = i32::try_from(self.buf.len() - at).unwrap_or(i32::MAX);
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn cstr(b: &mut BytesMut, s: &str) {
        b.put_slice(s.as_bytes());
        b.put_u8(0);
    }

    pub fn auth_ok(&mut self) {
        self.msg(b'R', |b| b.put_i32(0));
    }

    pub fn parameter_status(&mut self, k: &str, v: &str) {
        self.msg(b'S', |b| {
            Self::cstr(b, k);
            Self::cstr(b, v);
        });
    }

    pub fn backend_key(&mut self, pid: i32, key: i32) {
        self.msg(b'K', |b| {
            b.put_i32(pid);
            b.put_i32(key);
        });
    }

    pub fn ready(&mut self) {
        self.msg(b'Z', |b| b.put_u8(b'I'));
    }

    /// A RowDescription of text columns.
    pub fn row_description(&mut self, cols: &[String]) {
        self.msg(b'T', |b| {
            b.put_i16(i16::try_from(cols.len()).unwrap_or(i16::MAX));
            for c in cols {
                Self::cstr(b, c);
                b.put_i32(0); // table oid
                b.put_i16(0); // column
                b.put_i32(25); // text
                b.put_i16(-1);
                b.put_i32(-1);
                b.put_i16(0); // text format
            }
        });
    }

    pub fn data_row(&mut self, vals: &[Option<String>]) {
        self.msg(b'D', |b| {
            b.put_i16(i16::try_from(vals.len()).unwrap_or(i16::MAX));
            for v in vals {
                match v {
                    Some(v) => {
                        b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                        b.put_slice(v.as_bytes());
                    }
                    None => b.put_i32(-1),
                }
            }
        });
    }

    pub fn command_complete(&mut self, tag: &str) {
        self.msg(b'C', |b| Self::cstr(b, tag));
    }

    pub fn empty_query(&mut self) {
        self.msg(b'I', |_| {});
    }

    pub fn error(&mut self, severity: &str, code: &str, message: &str) {
        self.msg(b'E', |b| {
            b.put_u8(b'S');
            Self::cstr(b, severity);
            b.put_u8(b'V');
            Self::cstr(b, severity);
            b.put_u8(b'C');
            Self::cstr(b, code);
            b.put_u8(b'M');
            Self::cstr(b, message);
            b.put_u8(0);
        });
    }

    pub async fn flush<S: AsyncWrite + Unpin>(&mut self, s: &mut S) -> io::Result<()> {
        if !self.buf.is_empty() {
            s.write_all(&self.buf).await?;
            s.flush().await?;
            self.buf.clear();
        }
        Ok(())
    }
}
