//! Whether a server really answers, in its own protocol, with no client library (so that xtask
//! can use this crate without PostgreSQL, AMQP or MongoDB drivers): PostgreSQL runs `SELECT 1`,
//! RabbitMQ opens and closes an AMQP connection on a vhost, a MongoDB-wire server answers
//! `ping`. An open port alone proves little: RabbitMQ, for one, listens before it can log in.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long one probe may take before it counts as no answer.
const PROBE_PATIENCE: Duration = Duration::from_secs(3);

async fn connect(port: u16) -> anyhow::Result<TcpStream> {
    TcpStream::connect(("127.0.0.1", port)).await.with_context(|| format!("failed to connect to 127.0.0.1:{port}"))
}

async fn within<T>(what: &str, probe: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(PROBE_PATIENCE, probe).await.with_context(|| format!("{what}: no answer within {PROBE_PATIENCE:?}"))?
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the frontend/backend protocol, version 3.0, with trust authentication.

/// Connects as `user` to `database` and runs `SELECT 1`, expecting one row holding `1`.
pub(super) async fn postgres_select_one(port: u16, user: &str, database: &str) -> anyhow::Result<()> {
    within("PostgreSQL SELECT 1", async {
        let mut stream = connect(port).await?;
        let mut startup = Vec::new();
        startup.extend_from_slice(&196_608_i32.to_be_bytes());
        for text in ["user", user, "database", database] {
            startup.extend_from_slice(text.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut message = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        message.extend_from_slice(&startup);
        stream.write_all(&message).await?;
        postgres_until_ready(&mut stream).await?;
        let query = b"SELECT 1\0";
        let mut message = vec![b'Q'];
        message.extend_from_slice(&((query.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(query);
        stream.write_all(&message).await?;
        let mut value = None;
        loop {
            let (kind, body) = postgres_message(&mut stream).await?;
            match kind {
                b'D' => {
                    // Int16 column count, then Int32 length and the bytes of each column.
                    let length = i32::from_be_bytes(body.get(2..6).context("short data row")?.try_into()?);
                    let bytes = body.get(6..6 + length.max(0) as usize).context("short data row")?;
                    value = Some(String::from_utf8_lossy(bytes).into_owned());
                }
                b'Z' => break,
                b'E' => bail!("SELECT 1 failed: {}", postgres_error(&body)),
                _ => {}
            }
        }
        // Terminate, so the server logs no "unexpected EOF".
        stream.write_all(&[b'X', 0, 0, 0, 4]).await?;
        match value.as_deref() {
            Some("1") => Ok(()),
            other => bail!("SELECT 1 answered {other:?}"),
        }
    })
    .await
}

/// Reads the answer to the startup message up to ReadyForQuery; only trust (no password) logs in.
async fn postgres_until_ready(stream: &mut TcpStream) -> anyhow::Result<()> {
    loop {
        let (kind, body) = postgres_message(stream).await?;
        match kind {
            b'R' => {
                let code = i32::from_be_bytes(body.get(..4).context("short authentication message")?.try_into()?);
                if code != 0 {
                    bail!("PostgreSQL asks for authentication (code {code}); the run's own server trusts 127.0.0.1");
                }
            }
            b'E' => bail!("PostgreSQL refused the connection: {}", postgres_error(&body)),
            b'Z' => return Ok(()),
            _ => {}
        }
    }
}

async fn postgres_message(stream: &mut TcpStream) -> anyhow::Result<(u8, Vec<u8>)> {
    let kind = stream.read_u8().await.context("PostgreSQL closed the connection")?;
    let length = stream.read_i32().await?;
    if !(4..=1 << 20).contains(&length) {
        bail!("PostgreSQL sent a message of length {length}");
    }
    let mut body = vec![0; length as usize - 4];
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// The message (`M`) and code (`C`) fields of an ErrorResponse.
fn postgres_error(body: &[u8]) -> String {
    let mut parts = Vec::new();
    for field in body.split(|byte| *byte == 0) {
        if let Some((&kind, text)) = field.split_first()
            && (kind == b'M' || kind == b'C')
        {
            parts.push(String::from_utf8_lossy(text).into_owned());
        }
    }
    parts.join(" ")
}

// ---------------------------------------------------------------------------------------------
// AMQP 0-9-1: just the connection class (start, tune, open, close).

/// Opens an AMQP connection to `vhost` as `user` (PLAIN) and closes it again cleanly.
pub(super) async fn amqp_open_and_close(port: u16, user: &str, password: &str, vhost: &str) -> anyhow::Result<()> {
    within("AMQP connection", async {
        let mut stream = connect(port).await?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        amqp_expect(&mut stream, (10, 10), "connection.start").await?;
        let mut start_ok = Vec::new();
        start_ok.extend_from_slice(&0_u32.to_be_bytes()); // client properties: an empty table
        short_string(&mut start_ok, "PLAIN");
        let response = format!("\0{user}\0{password}");
        start_ok.extend_from_slice(&(response.len() as u32).to_be_bytes());
        start_ok.extend_from_slice(response.as_bytes());
        short_string(&mut start_ok, "en_US");
        amqp_send(&mut stream, (10, 11), &start_ok).await?;
        // A wrong login ends here: the broker closes the socket instead of tuning.
        let tune = amqp_expect(&mut stream, (10, 30), "connection.tune (after logging in)").await?;
        let tune_ok = tune.get(..8).context("short connection.tune")?.to_vec();
        amqp_send(&mut stream, (10, 31), &tune_ok).await?;
        let mut open = Vec::new();
        short_string(&mut open, vhost);
        short_string(&mut open, "");
        open.push(0);
        amqp_send(&mut stream, (10, 40), &open).await?;
        amqp_expect(&mut stream, (10, 41), "connection.open-ok").await?;
        let mut close = Vec::new();
        close.extend_from_slice(&200_u16.to_be_bytes());
        short_string(&mut close, "probe done");
        close.extend_from_slice(&[0, 0, 0, 0]);
        amqp_send(&mut stream, (10, 50), &close).await?;
        amqp_expect(&mut stream, (10, 51), "connection.close-ok").await?;
        Ok(())
    })
    .await
}

fn short_string(buffer: &mut Vec<u8>, text: &str) {
    buffer.push(text.len() as u8);
    buffer.extend_from_slice(text.as_bytes());
}

async fn amqp_send(stream: &mut TcpStream, (class, method): (u16, u16), arguments: &[u8]) -> anyhow::Result<()> {
    let mut payload = Vec::with_capacity(arguments.len() + 4);
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(arguments);
    let mut frame = vec![1, 0, 0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    stream.write_all(&frame).await.context("failed to send an AMQP frame")
}

/// Reads method frames (skipping heartbeats) until one arrives; it must be `expected`. Returns
/// its arguments. A connection.close from the broker is reported with its reply text.
async fn amqp_expect(stream: &mut TcpStream, expected: (u16, u16), what: &str) -> anyhow::Result<Vec<u8>> {
    loop {
        let mut header = [0u8; 7];
        stream.read_exact(&mut header).await.with_context(|| format!("the broker closed the connection before {what}"))?;
        let size = u32::from_be_bytes(header[3..7].try_into()?) as usize;
        if size > 1 << 20 {
            bail!("the broker sent an AMQP frame of {size} bytes");
        }
        let mut payload = vec![0; size + 1];
        stream.read_exact(&mut payload).await?;
        if payload.pop() != Some(0xCE) {
            bail!("an AMQP frame without its end marker");
        }
        if header[0] != 1 {
            continue;
        }
        let class = u16::from_be_bytes(payload.get(..2).context("short method frame")?.try_into()?);
        let method = u16::from_be_bytes(payload.get(2..4).context("short method frame")?.try_into()?);
        if (class, method) == expected {
            return Ok(payload[4..].to_vec());
        }
        if (class, method) == (10, 50) {
            let code = payload.get(4..6).map(|code| u16::from_be_bytes([code[0], code[1]])).unwrap_or_default();
            let text_length = payload.get(6).copied().unwrap_or_default() as usize;
            let text = payload.get(7..7 + text_length).map(String::from_utf8_lossy).unwrap_or_default();
            bail!("the broker closed the connection instead of {what}: {code} {text}");
        }
        bail!("the broker sent method {class}.{method} instead of {what}");
    }
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ's management API.

/// `GET /api/overview` answers 200 with the given login.
pub(super) async fn management_answers(url: &str, user: &str, password: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(PROBE_PATIENCE).build()?;
    let response = client.get(format!("{url}/api/overview")).basic_auth(user, Some(password)).send().await?;
    if !response.status().is_success() {
        bail!("GET {url}/api/overview answered {}", response.status());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// MongoDB wire protocol: one OP_MSG with `{ping: 1, $db: "admin"}`.

/// Sends `ping` and expects `ok: 1`.
pub(super) async fn mongodb_ping(port: u16) -> anyhow::Result<()> {
    within("MongoDB ping", async {
        let mut stream = connect(port).await?;
        let mut document = Vec::new();
        document.push(0x10); // int32
        document.extend_from_slice(b"ping\0");
        document.extend_from_slice(&1_i32.to_le_bytes());
        document.push(0x02); // string
        document.extend_from_slice(b"$db\0");
        document.extend_from_slice(&6_i32.to_le_bytes());
        document.extend_from_slice(b"admin\0");
        document.push(0);
        let mut bson = ((document.len() + 4) as i32).to_le_bytes().to_vec();
        bson.extend_from_slice(&document);
        let mut body = 0_u32.to_le_bytes().to_vec(); // flag bits
        body.push(0); // section kind 0: the body document
        body.extend_from_slice(&bson);
        let mut message = ((body.len() + 16) as i32).to_le_bytes().to_vec();
        message.extend_from_slice(&1_i32.to_le_bytes()); // request id
        message.extend_from_slice(&0_i32.to_le_bytes()); // response to
        message.extend_from_slice(&2013_i32.to_le_bytes()); // OP_MSG
        message.extend_from_slice(&body);
        stream.write_all(&message).await?;
        let length = stream.read_i32_le().await.context("the server closed the connection")?;
        if !(21..=1 << 24).contains(&length) {
            bail!("the server answered a message of length {length}");
        }
        let mut reply = vec![0; length as usize - 4];
        stream.read_exact(&mut reply).await?;
        let op_code = i32::from_le_bytes(reply[8..12].try_into()?);
        if op_code != 2013 {
            bail!("the server answered with op code {op_code}, not OP_MSG");
        }
        // Header (12 more bytes), flag bits (4), section kind (1), then the document.
        let document = reply.get(17..).context("short OP_MSG")?;
        match bson_ok(document) {
            Some(1.0) => Ok(()),
            other => bail!("ping answered ok = {other:?}"),
        }
    })
    .await
}

/// The top-level `ok` field of a BSON document, as a number (walking the fields a reply holds
/// before it; `None` if it is absent or after a field of a type not read here).
fn bson_ok(document: &[u8]) -> Option<f64> {
    let mut at = 4;
    loop {
        let kind = *document.get(at)?;
        if kind == 0 {
            return None;
        }
        let name_end = at + 1 + document.get(at + 1..)?.iter().position(|byte| *byte == 0)?;
        let name = &document[at + 1..name_end];
        let value = name_end + 1;
        let int32_at =
            |position: usize| -> Option<i32> { Some(i32::from_le_bytes(document.get(position..position + 4)?.try_into().ok()?)) };
        if name == b"ok" {
            return match kind {
                0x01 => Some(f64::from_le_bytes(document.get(value..value + 8)?.try_into().ok()?)),
                0x10 => int32_at(value).map(f64::from),
                0x12 => Some(i64::from_le_bytes(document.get(value..value + 8)?.try_into().ok()?) as f64),
                0x08 => Some(f64::from(*document.get(value)?)),
                _ => None,
            };
        }
        at = value
            + match kind {
                0x01 | 0x09 | 0x11 | 0x12 => 8,
                0x02 | 0x0D | 0x0E => 4 + int32_at(value)? as usize,
                0x03 | 0x04 => int32_at(value)? as usize,
                0x05 => 5 + int32_at(value)? as usize,
                0x07 => 12,
                0x08 => 1,
                0x0A | 0x06 | 0x7F | 0xFF => 0,
                0x10 => 4,
                0x13 => 16,
                _ => return None,
            };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ok_field_is_found_after_fields_of_other_types() {
        // {"n": "x", "sub": {}, "ok": 1.0}
        let mut document = Vec::new();
        document.extend_from_slice(&[0x02, b'n', 0, 2, 0, 0, 0, b'x', 0]);
        document.extend_from_slice(&[0x03, b's', b'u', b'b', 0, 5, 0, 0, 0, 0]);
        document.extend_from_slice(&[0x01, b'o', b'k', 0]);
        document.extend_from_slice(&1.0_f64.to_le_bytes());
        document.push(0);
        let mut bson = ((document.len() + 4) as i32).to_le_bytes().to_vec();
        bson.extend_from_slice(&document);
        assert_eq!(bson_ok(&bson), Some(1.0));
    }
}
