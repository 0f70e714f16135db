//! An OTLP/HTTP trace receiver for tests: accepts `POST /v1/traces` (protobuf `ExportTraceServiceRequest`) on a
//! loopback port, keeps every span it is sent, and answers 200 like a collector.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// One received span, ids in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

pub struct Receiver {
    pub address: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let address = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { address, spans }
    }

    /// The endpoint to configure: the receiver's base URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits until the spans of trace `trace_id` satisfy `done`, and returns them.
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<ReceivedSpan> = self
                .spans
                .lock()
                .expect("spans")
                .iter()
                .filter(|span| span.trace_id == trace_id)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace_id} never completed; got {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// HTTP/1.1 requests on one connection, kept alive, until the client closes it.
fn serve(stream: TcpStream, spans: &Mutex<Vec<ReceivedSpan>>) {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(request) = ExportTraceServiceRequest::decode(&body[..]) {
            let mut kept = spans.lock().expect("spans");
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        kept.push(ReceivedSpan {
                            name: span.name,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent_span_id: hex(&span.parent_span_id),
                            attributes: span
                                .attributes
                                .into_iter()
                                .map(|kv| {
                                    let value = kv
                                        .value
                                        .and_then(|v| v.value)
                                        .map(|v| format!("{v:?}"))
                                        .unwrap_or_default();
                                    (kv.key, value)
                                })
                                .collect(),
                        });
                    }
                }
            }
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
