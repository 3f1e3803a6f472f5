//! The load generator's HTTP/1.1 client: one keep-alive connection, one request in flight.
//!
//! A benchmark client should add as little of its own time as it can to what it measures, and
//! should hide nothing: it writes each request in one `write`, reads the status line, the
//! headers and exactly the body they announce (`Content-Length` or chunked), and reports any
//! status but 200 as an error instead of retrying. It is not a general client: no TLS, no
//! redirects, no pipelining.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server's response is not HTTP/1.1 as expected: {0}")]
    Malformed(String),
}

/// A response: status and body (headers are read and dropped).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection.
pub struct Connection {
    addr: SocketAddr,
    host: String,
    token: Option<String>,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
    line: String,
}

impl Connection {
    pub fn open(addr: SocketAddr, token: Option<&str>) -> Result<Connection, HttpError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|source| HttpError::Connect { addr, source })?;
        // One small request, then wait for its answer: Nagle would hold it back for an ack.
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        Ok(Connection {
            addr,
            host: addr.to_string(),
            token: token.map(str::to_string),
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            request: Vec::with_capacity(4096),
            line: String::new(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn get(&mut self, path: &str) -> Result<Response, HttpError> {
        self.send("GET", path, None)
    }

    pub fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Response, HttpError> {
        self.send("POST", path, Some(body))
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        self.request.clear();
        let r = &mut self.request;
        write!(r, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host)?;
        if let Some(token) = &self.token {
            write!(r, "Authorization: Bearer {token}\r\n")?;
        }
        if let Some(body) = body {
            write!(
                r,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )?;
        }
        r.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            r.extend_from_slice(body);
        }
        self.writer.write_all(&self.request)?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Response, HttpError> {
        let status_line = self.next_line()?;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = self.next_line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(HttpError::Malformed(format!("header {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| HttpError::Malformed(format!("Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let body = match (chunked, length) {
            (true, _) => self.read_chunked()?,
            (false, Some(n)) => {
                let mut body = vec![0; n];
                self.reader.read_exact(&mut body)?;
                body
            }
            (false, None) => {
                return Err(HttpError::Malformed(
                    "a response with neither Content-Length nor chunked encoding".into(),
                ));
            }
        };
        Ok(Response { status, body })
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let size_line = self.next_line()?;
            let digits = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(digits, 16)
                .map_err(|_| HttpError::Malformed(format!("chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.next_line()?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            if !self.next_line()?.is_empty() {
                return Err(HttpError::Malformed("a chunk longer than its size".into()));
            }
        }
    }

    /// The next line without its CRLF; an error at the end of the stream.
    fn next_line(&mut self) -> Result<String, HttpError> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(HttpError::Malformed(
                "the server closed the connection mid-response".into(),
            ));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']).to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A server that answers each request on one connection with the next canned response.
    fn canned(responses: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            for response in responses {
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                writer.write_all(response.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_sized_and_chunked_bodies_on_one_connection() {
        let addr = canned(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
        ]);
        let mut conn = Connection::open(addr, Some("t")).unwrap();
        let first = conn.post_json("/x", b"{\"a\":1}").unwrap();
        assert_eq!((first.status, first.body.as_slice()), (200, &b"hello"[..]));
        let second = conn.get("/y").unwrap();
        assert_eq!(
            (second.status, second.body.as_slice()),
            (200, &b"abcde"[..])
        );
        let third = conn.get("/z").unwrap();
        assert_eq!((third.status, third.body.as_slice()), (404, &b"{}"[..]));
    }

    #[test]
    fn a_response_cut_short_is_an_error_not_a_hang() {
        let addr = canned(vec!["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
        let mut conn = Connection::open(addr, None).unwrap();
        assert!(conn.get("/").is_err());
        let addr = canned(vec!["garbage\r\n\r\n"]);
        let mut conn = Connection::open(addr, None).unwrap();
        assert!(matches!(conn.get("/"), Err(HttpError::Malformed(_))));
    }
}
