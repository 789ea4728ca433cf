//! A minimal HTTP/1.1 GET, enough for `/metrics`, `/healthz` and `/readyz`.

use std::{collections::BTreeMap, net::SocketAddr};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// GETs `path` and returns the status code and body.
///
/// # Errors
/// On connection failure or a response that is not HTTP/1.x.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The values of counter `metric` a service exports on its HTTP `addr`
/// (`/metrics`), by the value of its label `label`, summed over its other
/// labels.
///
/// # Errors
/// When /metrics cannot be read.
pub async fn counts(
    addr: SocketAddr,
    metric: &str,
    label: &str,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let (_, text) = get(addr, "/metrics").await?;
    let mut counts = BTreeMap::new();
    let prefix = format!("{metric}{{");
    let key = format!("{label}=\"");
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let value = line.split(&key).nth(1).and_then(|v| v.split('"').next());
        let count = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok());
        if let (Some(value), Some(count)) = (value, count) {
            *counts.entry(value.to_owned()).or_insert(0.0) += count;
        }
    }
    Ok(counts)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks() {
        assert_eq!(
            super::dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
