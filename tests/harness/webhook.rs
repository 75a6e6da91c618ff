//! A webhook receiver on loopback for the event-export tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use edgeroom_durable::export::{sign_webhook, webhook_key};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One delivery the receiver accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The JSON body.
    pub body: String,
}

/// A webhook receiver on loopback that answers each delivery with `status(n)` (n counts every
/// request) and keeps the ones it accepted.
pub struct Receiver {
    /// Where to point an endpoint.
    pub url: String,
    accepted: Arc<Mutex<Vec<Delivery>>>,
    /// Every request it got, failed ones included.
    pub requests: Arc<AtomicUsize>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hooks", listener.local_addr().unwrap().port());
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (seen, count, status) = (accepted.clone(), requests.clone(), Arc::new(status));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (seen, count, status) = (seen.clone(), count.clone(), status.clone());
                tokio::spawn(async move {
                    let Some((headers, body)) = read_request(&mut stream).await else { return };
                    let code = status(count.fetch_add(1, Ordering::SeqCst));
                    if code == 200 {
                        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
                        seen.lock().unwrap().push(Delivery {
                            id: header("webhook-id"),
                            timestamp: header("webhook-timestamp"),
                            signature: header("webhook-signature"),
                            body,
                        });
                    }
                    let answer =
                        format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Self { url, accepted, requests }
    }

    /// The deliveries it accepted, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.accepted.lock().unwrap().clone()
    }

    /// Waits (up to a minute) until `done` holds for [`Receiver::events`], and returns them;
    /// panics naming `what` otherwise.
    pub async fn until(
        &self,
        secret: &str,
        what: &str,
        done: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        for _ in 0..240 {
            let events = self.events(secret);
            if done(&events) {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        panic!("{what}: got {} events", self.events(secret).len());
    }

    /// Every accepted event by id (deduplicated), checking each delivery's signature.
    pub fn events(&self, secret: &str) -> BTreeMap<String, Value> {
        let key = webhook_key(secret).unwrap();
        let mut events = BTreeMap::new();
        for delivery in self.deliveries() {
            let expected =
                sign_webhook(&key, &delivery.id, delivery.timestamp.parse().unwrap(), &delivery.body)
                    .unwrap();
            assert_eq!(delivery.signature, expected, "a valid Standard Webhooks signature");
            let body: Value = serde_json::from_str(&delivery.body).unwrap();
            let seqs: Vec<u64> =
                body["events"].as_array().unwrap().iter().filter_map(|e| e["seq"].as_u64()).collect();
            assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "a batch is in seq order: {seqs:?}");
            for event in body["events"].as_array().unwrap() {
                events.insert(event["id"].as_str().unwrap().to_owned(), event.clone());
            }
        }
        events
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(BTreeMap<String, String>, String)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((headers, String::from_utf8_lossy(&buffer[head_end..]).to_string()))
}
