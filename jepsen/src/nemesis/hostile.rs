//! The hostile nemesis: for its window, clients that misuse the Trino
//! protocol against one coordinator. Each request's answer is sorted into
//! a class (the status, or `dropped`, `timeout`, `undecodable`,
//! `unsendable`), counted by kind of request, and recorded in the history;
//! [`crate::checker::hostile`] decides from those counts.
//!
//! What it sends, bounded in count and concurrency:
//! - `submit`: `SELECT 1` with odd headers: long (300+ characters) and odd
//!   user names (a TAB, unicode, dots, `${USER}`, path characters, only
//!   blanks), a long source, many client tags, a malformed session;
//! - `follow`: each answered submission followed through its `nextUri`s to
//!   the end, so nothing is left for the coordinator to abandon;
//! - `poll-wrong-slug`, `poll-forged-id`: a real query's `nextUri` with a
//!   wrong slug, a bad token, and forged ids such as
//!   `..%2F..%2Fadmin%2Fconfig`, as polls, query-info reads and cancels;
//!   then the real query followed to its end (`real_query_end`);
//! - `flood`: [`FLOOD`] quick `SELECT 1` submissions, [`CONCURRENCY`] at a
//!   time, each followed to its end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{HttpClient, HttpError};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};

use crate::checker::hostile::is_finding;

/// Submissions in the flood.
pub const FLOOD: usize = 200;
/// Requests in flight at once (a 2-core machine runs the whole cluster).
pub const CONCURRENCY: usize = 4;
/// Longest one hostile request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the whole hostile run may take.
const RUN_FOR: Duration = Duration::from_secs(30);
/// Polls that follow one query at most.
const FOLLOW_POLLS: usize = 40;
/// Findings kept as examples.
const EXAMPLES: usize = 20;

/// What the hostile clients sent and the answers, by kind of request.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub coordinator: String,
    pub sent: u64,
    /// Kind of request -> answer class -> count.
    pub answers: BTreeMap<String, BTreeMap<String, u64>>,
    /// The first answers that are findings: the request and the answer.
    pub findings: Vec<Value>,
    /// How the real query polled with forged ids ended: its state, and
    /// its error's name if it failed.
    pub real_query_end: Option<String>,
    /// Asked to stop (the run ended) before everything was sent.
    pub stopped_early: bool,
}

impl Report {
    fn count(&mut self, kind: &str, class: &str, request: &str, body: &str) {
        self.sent += 1;
        *self
            .answers
            .entry(kind.to_string())
            .or_default()
            .entry(class.to_string())
            .or_default() += 1;
        if is_finding(class) && self.findings.len() < EXAMPLES {
            let body: String = body.chars().take(300).collect();
            self.findings
                .push(json!({"kind": kind, "request": request, "answer": class, "body": body}));
        }
    }
}

/// The class of an answer: its status, or what went wrong on the way.
fn classify(r: &Result<Vec<u8>, HttpError>) -> (String, Option<Value>, String) {
    match r {
        Ok(body) => match serde_json::from_slice::<Value>(body) {
            Ok(v) => ("200".into(), Some(v), String::new()),
            Err(e) => ("undecodable".into(), None, e.to_string()),
        },
        Err(HttpError::Status { status, body, .. }) => (status.to_string(), None, body.clone()),
        Err(HttpError::Unreachable { source, .. }) if source.is_builder() => {
            ("unsendable".into(), None, source.to_string())
        }
        Err(HttpError::Unreachable { source, .. }) if source.is_timeout() => {
            ("timeout".into(), None, source.to_string())
        }
        Err(HttpError::Unreachable { source, .. }) => {
            ("dropped".into(), None, format!("{source:#}"))
        }
        Err(e @ HttpError::Decode { .. }) => ("undecodable".into(), None, e.to_string()),
    }
}

/// The odd users, each with how it is sent: every one with a long source
/// and many tags. `selector_user` matches a selector of the run's groups,
/// so some of these are admitted (and followed to their end).
pub fn odd_users(selector_user: &str) -> Vec<String> {
    vec![
        "u".repeat(320),
        format!("{selector_user}\t"),
        "tab\tin\tthe\tmiddle".into(),
        "ünïcødé-用户-🙂".into(),
        "dots.in.the..name...".into(),
        "${USER}".into(),
        "$(id)`id`".into(),
        "../../etc/passwd".into(),
        "a/b\\c%2F..%2Fadmin%2Fconfig".into(),
        "   ".into(),
        format!("{selector_user}{}", ".x".repeat(200)),
    ]
}

struct Hostile {
    http: HttpClient,
    coordinator: String,
    report: Mutex<Report>,
    deadline: Instant,
    stop: watch::Receiver<bool>,
}

impl Hostile {
    fn over(&self) -> bool {
        *self.stop.borrow() || Instant::now() > self.deadline
    }

    async fn get(&self, kind: &str, url: &str) -> Option<Value> {
        let r = self.http.get_bytes(url, &[]).await;
        let (class, v, body) = classify(&r);
        self.report.lock().await.count(kind, &class, url, &body);
        v
    }

    async fn delete(&self, kind: &str, url: &str) {
        let r = self.http.delete(url).await;
        let (class, _, body) = classify(&r);
        // A cancel's answer is empty (204) or anything else, not JSON.
        let class = match &r {
            Ok(b) if b.is_empty() => "204".to_string(),
            Ok(_) => "200".to_string(),
            Err(_) => class,
        };
        self.report
            .lock()
            .await
            .count(kind, &class, &format!("DELETE {url}"), &body);
    }

    async fn submit(&self, kind: &str, sql: &str, headers: &[(&str, &str)]) -> Option<Value> {
        let url = self.http.url(&self.coordinator, "/v1/statement");
        let r = self
            .http
            .post_bytes(&url, "text/plain", sql.as_bytes().to_vec(), None, headers)
            .await;
        let (class, v, body) = classify(&r);
        let user = headers
            .iter()
            .find(|(k, _)| *k == "x-trino-user")
            .map_or("", |(_, v)| *v);
        let request: String = format!("POST {url} user {user:?}")
            .chars()
            .take(200)
            .collect();
        self.report
            .lock()
            .await
            .count(kind, &class, &request, &body);
        v
    }

    /// Follows `first`'s `nextUri`s to the end (bounded); answers the last
    /// state seen.
    async fn follow(&self, first: Option<Value>) -> Option<String> {
        let mut r = first?;
        for _ in 0..FOLLOW_POLLS {
            let Some(next) = r["nextUri"].as_str().map(str::to_string) else {
                break;
            };
            let url = if next.contains('?') {
                next
            } else {
                format!("{next}?maxWait=100ms")
            };
            r = self.get("follow", &url).await?;
        }
        let state = r["stats"]["state"].as_str()?;
        Some(match r["error"]["errorName"].as_str() {
            Some(error) => format!("{state} {error}"),
            None => state.to_string(),
        })
    }
}

/// Sends the hostile requests to `coordinator` until done, `stop`, or
/// [`RUN_FOR`]; `selector_user` is a user the run's selectors admit.
pub async fn run(coordinator: &str, selector_user: &str, stop: watch::Receiver<bool>) -> Report {
    let h = Arc::new(Hostile {
        http: crate::tls::http(None, REQUEST_TIMEOUT),
        coordinator: coordinator.to_string(),
        report: Mutex::new(Report {
            coordinator: coordinator.to_string(),
            ..Report::default()
        }),
        deadline: Instant::now() + RUN_FOR,
        stop,
    });
    let source = format!("hostile-{}", "s".repeat(400));
    let tags: String = (0..200)
        .map(|i| format!("tag{i}"))
        .collect::<Vec<_>>()
        .join(",");
    // Odd users, odd headers.
    for user in odd_users(selector_user) {
        if h.over() {
            break;
        }
        let headers = [
            ("x-trino-user", user.as_str()),
            ("x-trino-source", source.as_str()),
            ("x-trino-client-tags", tags.as_str()),
        ];
        let first = h.submit("submit", "SELECT 1", &headers).await;
        h.follow(first).await;
    }
    for headers in [
        vec![
            ("x-trino-user", selector_user),
            ("x-trino-session", "nonsense"),
        ],
        vec![
            ("x-trino-user", selector_user),
            ("x-trino-client-tags", ",,,,"),
        ],
        vec![("x-trino-source", "no user at all")],
    ] {
        if h.over() {
            break;
        }
        let first = h.submit("submit", "SELECT 1", &headers).await;
        h.follow(first).await;
    }
    // A real query, polled with a wrong slug and forged ids, then followed.
    if !h.over() {
        let real = h
            .submit("submit", "SELECT 1", &[("x-trino-user", selector_user)])
            .await;
        let next = real
            .as_ref()
            .and_then(|r| r["nextUri"].as_str())
            .map(str::to_string);
        if let Some(next) = next {
            for url in forged(&next, &h.coordinator) {
                if h.over() {
                    break;
                }
                let kind = url.0;
                if url.2 {
                    h.delete(kind, &url.1).await;
                } else {
                    h.get(kind, &url.1).await;
                }
            }
        }
        let end = h.follow(real).await;
        h.report.lock().await.real_query_end = end;
    }
    // The flood, CONCURRENCY at a time.
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(FLOOD));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let h = h.clone();
        let left = left.clone();
        let user = selector_user.to_string();
        tasks.spawn(async move {
            while !h.over() {
                let taken = left.fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                );
                if taken.is_err() {
                    break;
                }
                let first = h
                    .submit("flood", "SELECT 1", &[("x-trino-user", user.as_str())])
                    .await;
                h.follow(first).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let stopped_early = h.over() && left.load(std::sync::atomic::Ordering::Relaxed) > 0;
    let mut report = h.report.lock().await.clone();
    report.stopped_early = stopped_early;
    report
}

/// Forged requests from a real `nextUri`
/// (`http://HOST/v1/statement/PHASE/ID/SLUG/TOKEN`): (kind, url, as a
/// DELETE). Empty when `next` has another shape.
pub fn forged(next: &str, coordinator: &str) -> Vec<(&'static str, String, bool)> {
    let path = next
        .split_once("/v1/statement/")
        .map(|(_, p)| p.split('?').next().unwrap_or(p));
    let Some(parts) = path.map(|p| p.split('/').collect::<Vec<_>>()) else {
        return Vec::new();
    };
    let [phase, id, slug, token] = parts[..] else {
        return Vec::new();
    };
    // In the scheme the coordinator gave (https under `--tls`).
    let scheme = next.split_once("://").map_or("http", |(s, _)| s);
    let base = format!("{scheme}://{coordinator}/v1/statement");
    let mut out = Vec::new();
    for bad_slug in [
        "0123456789abcdef",
        "zz",
        "..%2F..%2Fadmin",
        &"f".repeat(300),
    ] {
        let url = format!("{base}/{phase}/{id}/{bad_slug}/{token}");
        out.push(("poll-wrong-slug", url.clone(), false));
        out.push(("poll-wrong-slug", url, true));
    }
    out.push((
        "poll-wrong-slug",
        format!("{base}/{phase}/{id}/{slug}/not-a-number"),
        false,
    ));
    out.push((
        "poll-wrong-slug",
        format!("{base}/admin/{id}/{slug}/{token}"),
        false,
    ));
    let long = "9".repeat(400);
    for bad_id in [
        "..%2F..%2Fadmin%2Fconfig",
        "%2e%2e%2f%2e%2e%2fv1%2fadmin%2fconfig",
        "20260101_000000_00000_aaaaa",
        "%00",
        "%E2%80%AE%F0%9F%99%82",
        long.as_str(),
    ] {
        for p in [phase, "executing"] {
            let url = format!("{base}/{p}/{bad_id}/{slug}/{token}");
            out.push(("poll-forged-id", url.clone(), false));
            out.push(("poll-forged-id", url, true));
        }
        out.push((
            "poll-forged-id",
            format!("{scheme}://{coordinator}/v1/query/{bad_id}"),
            false,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_urls_keep_the_real_parts_but_one() {
        let next = "http://10.0.0.5:8000/v1/statement/queued/20260101_000000_00001_abcde/0123456789abcdee/1";
        let f = forged(next, "10.0.0.5:8000");
        assert!(f.len() > 20, "{f:?}");
        assert!(f
            .iter()
            .any(|(k, u, _)| *k == "poll-forged-id" && u.contains("..%2F..%2Fadmin%2Fconfig")));
        assert!(f.iter().any(|(_, _, delete)| *delete));
        for (_, u, _) in &f {
            assert!(u.starts_with("http://10.0.0.5:8000/v1/"), "{u}");
            assert_ne!(u, next, "a forged url is the real one");
        }
        assert!(forged("http://x/v1/other", "x").is_empty());
        assert!(forged("http://x/v1/statement/a/b", "x").is_empty());
        assert!(forged("", "x").is_empty());
    }

    #[test]
    fn odd_users_are_odd() {
        let users = odd_users("alice");
        assert!(users.iter().any(|u| u.chars().count() >= 300));
        assert!(users.iter().any(|u| u.contains('\t')));
        assert!(users.iter().any(|u| !u.is_ascii()));
        assert!(users.iter().any(|u| u.contains("${")));
        assert!(users.iter().any(|u| u.contains('/')));
    }

    #[test]
    fn findings_are_counted_and_kept_as_examples() {
        let mut r = Report::default();
        r.count("submit", "400", "POST", "bad");
        r.count("flood", "500", "POST", "boom");
        r.count("flood", "503", "POST", "full");
        r.count("follow", "dropped", "GET", "reset");
        assert_eq!(r.sent, 4);
        assert_eq!(r.answers["flood"]["503"], 1);
        assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
    }
}
