//! The control protocol: one JSON object per line each way, one reply
//! line per request line, in order.
//!
//! Requests name a command in `"cmd"`:
//!
//! ```text
//! {"cmd":"status"}
//! {"cmd":"metrics"}
//! {"cmd":"reload"}
//! {"cmd":"stop"}
//! {"cmd":"scale","service":"api","workers":4}      (or "service":3, by id)
//! {"cmd":"restart","service":"api","worker":1}
//! ```
//!
//! Every request may also carry `"protocol":1`; a client that does is
//! told clearly when it speaks another version. Unknown fields are errors,
//! so a typo (`"worker"` for `"workers"`) does not pass silently.
//!
//! Replies are `{"ok":true,"protocol":1, ...payload}` or
//! `{"ok":false,"protocol":1,"error":"..."}`. This module is pure: no I/O.

use serde_json::{Map, Value};

use crate::status::{Status, PROTOCOL_VERSION};

/// The largest worker count `scale` accepts, and the bound of a worker id
/// in `restart`: [`MAX_WORKERS`](crate::MAX_WORKERS), the bound of every
/// face. A typo such as `40000` should not fork-bomb the host.
pub const MAX_WORKERS_PER_SERVICE: i64 = crate::MAX_WORKERS;

/// A service, as a request names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceRef {
    /// Its id (what `add` returned): a JSON integer.
    Id(u64),
    /// Its name: a JSON string.
    Name(String),
}

/// One command to the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Reply with the [`Status`] (`"status"` field).
    Status,
    /// Reload, as SIGHUP does.
    Reload,
    /// Set a service's worker count.
    Scale {
        /// Which service.
        service: ServiceRef,
        /// The new count, `0..=MAX_WORKERS_PER_SERVICE`.
        workers: i64,
    },
    /// Stop one worker so that it is forked again with the same id.
    Restart {
        /// Which service.
        service: ServiceRef,
        /// The worker id, below [`MAX_WORKERS_PER_SERVICE`]; whether the
        /// service has that id is the master's check.
        worker: usize,
    },
    /// Graceful stop, as SIGTERM does.
    Stop,
    /// Reply with the Prometheus text (`"metrics"` field).
    Metrics,
}

const COMMANDS: &str = "status, reload, scale, restart, stop, metrics";

impl Request {
    /// The request as one JSON line, without the trailing newline, tagged
    /// with this [`PROTOCOL_VERSION`]. [`parse_request`] reads it back.
    pub fn to_line(&self) -> String {
        let mut m = Map::new();
        let cmd = match self {
            Request::Status => "status",
            Request::Reload => "reload",
            Request::Stop => "stop",
            Request::Metrics => "metrics",
            Request::Scale { service, workers } => {
                m.insert("service".into(), service_value(service));
                m.insert("workers".into(), (*workers).into());
                "scale"
            }
            Request::Restart { service, worker } => {
                m.insert("service".into(), service_value(service));
                m.insert("worker".into(), (*worker).into());
                "restart"
            }
        };
        m.insert("cmd".into(), cmd.into());
        m.insert("protocol".into(), PROTOCOL_VERSION.into());
        Value::Object(m).to_string()
    }
}

fn service_value(s: &ServiceRef) -> Value {
    match s {
        ServiceRef::Id(id) => (*id).into(),
        ServiceRef::Name(n) => n.as_str().into(),
    }
}

/// Parses one request line (without or with its `\n` / `\r\n`). Every
/// refusal is a message fit to send back in [`reply_error`].
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty request: expected a JSON object such as {\"cmd\":\"status\"}".into());
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("a request must be a JSON object such as {\"cmd\":\"status\"}".into());
    };
    match obj.get("protocol") {
        None => {}
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "protocol {v} is not supported: this master speaks protocol {PROTOCOL_VERSION}"
            ))
        }
    }
    let cmd = match obj.get("cmd") {
        None => return Err(format!("missing \"cmd\" (one of: {COMMANDS})")),
        Some(Value::String(c)) => c.as_str(),
        Some(v) => return Err(format!("\"cmd\" must be a string, not {}", kind(v))),
    };
    let (request, fields): (Request, &[&str]) = match cmd {
        "status" => (Request::Status, &[]),
        "reload" => (Request::Reload, &[]),
        "stop" => (Request::Stop, &[]),
        "metrics" => (Request::Metrics, &[]),
        "scale" => {
            let service = service_field(&obj, cmd)?;
            let workers = count_field(&obj, cmd, "workers", MAX_WORKERS_PER_SERVICE)?;
            (Request::Scale { service, workers }, &["service", "workers"])
        }
        "restart" => {
            let service = service_field(&obj, cmd)?;
            let worker = count_field(&obj, cmd, "worker", MAX_WORKERS_PER_SERVICE - 1)?;
            let worker = usize::try_from(worker).expect("0..MAX fits usize");
            (Request::Restart { service, worker }, &["service", "worker"])
        }
        other => {
            return Err(format!(
                "unknown command {:?} (expected one of: {COMMANDS})",
                other
            ))
        }
    };
    if let Some(extra) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "cmd" | "protocol") && !fields.contains(&k.as_str()))
    {
        return Err(format!("unknown field {extra:?} for command {cmd:?}"));
    }
    Ok(request)
}

fn service_field(obj: &Map<String, Value>, cmd: &str) -> Result<ServiceRef, String> {
    match obj.get("service") {
        None => Err(format!("{cmd:?} needs \"service\" (a service id or name)")),
        Some(Value::String(s)) if s.is_empty() => Err("\"service\" must not be empty".into()),
        Some(Value::String(s)) => Ok(ServiceRef::Name(s.clone())),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(ServiceRef::Id)
            .ok_or_else(|| format!("\"service\" id must be a non-negative integer, not {n}")),
        Some(v) => Err(format!(
            "\"service\" must be a service id (integer) or name (string), not {}",
            kind(v)
        )),
    }
}

/// An integer field in `0..=max`.
fn count_field(obj: &Map<String, Value>, cmd: &str, field: &str, max: i64) -> Result<i64, String> {
    let v = obj
        .get(field)
        .ok_or_else(|| format!("{cmd:?} needs {field:?} (an integer)"))?;
    let Value::Number(n) = v else {
        return Err(format!("{field:?} must be an integer, not {}", kind(v)));
    };
    match n.as_i64() {
        Some(i) if (0..=max).contains(&i) => Ok(i),
        Some(i) if i < 0 => Err(format!("{field:?} must not be negative (got {i})")),
        // Past i64, or a float such as 4.0 or 1e3.
        None if n.is_f64() => Err(format!("{field:?} must be an integer, not {n}")),
        _ => Err(format!("{field:?} out of range: {n} (the limit is {max})")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A success reply: `{"ok":true,"protocol":1, ...payload}`, without the
/// trailing newline (the server adds it). `ok` and `protocol` come first;
/// payload keys of those names are dropped.
pub fn reply_ok(mut payload: Map<String, Value>) -> String {
    payload.remove("ok");
    payload.remove("protocol");
    let head = format!("{{\"ok\":true,\"protocol\":{PROTOCOL_VERSION}");
    if payload.is_empty() {
        return head + "}";
    }
    // serde_json writes "{...}"; splice its inside after the head.
    let body = Value::Object(payload).to_string();
    format!("{head},{}", &body[1..])
}

/// An error reply: `{"ok":false,"protocol":1,"error":"..."}`, without the
/// trailing newline.
pub fn reply_error(msg: impl AsRef<str>) -> String {
    format!(
        "{{\"ok\":false,\"protocol\":{PROTOCOL_VERSION},\"error\":{}}}",
        Value::from(msg.as_ref())
    )
}

/// The reply to `status`: `{"ok":true,"protocol":1,"status":{...}}`.
pub fn status_reply(status: &Status) -> String {
    let mut m = Map::new();
    m.insert(
        "status".into(),
        serde_json::to_value(status).expect("Status has only JSON-able fields"),
    );
    reply_ok(m)
}

/// The reply to `metrics`: `{"ok":true,"protocol":1,"metrics":"<text>"}`.
pub fn metrics_reply(text: &str) -> String {
    let mut m = Map::new();
    m.insert("metrics".into(), text.into());
    reply_ok(m)
}

/// A reply as a client reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `ok` was true: the payload fields (without `ok` and `protocol`).
    Ok(Map<String, Value>),
    /// `ok` was false: the master's message.
    Error(String),
}

/// Parses one reply line (client side). An `Err` means the line is not a
/// reply of this protocol version at all.
pub fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("malformed reply: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("malformed reply: not a JSON object".into());
    };
    match obj.remove("protocol") {
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "the master speaks protocol {v}, this client protocol {PROTOCOL_VERSION}"
            ))
        }
        None => return Err("malformed reply: no \"protocol\"".into()),
    }
    match obj.remove("ok") {
        Some(Value::Bool(true)) => Ok(Reply::Ok(obj)),
        Some(Value::Bool(false)) => Ok(Reply::Error(match obj.remove("error") {
            Some(Value::String(s)) => s,
            _ => "unspecified error".into(),
        })),
        _ => Err("malformed reply: no boolean \"ok\"".into()),
    }
}

/// Resolves a [`ServiceRef`] against the master's services, given as
/// `(id, name)` pairs. Names are not unique in the API, so a name two
/// services share is refused ("ambiguous") rather than guessed.
pub fn resolve(services: &[(u64, &str)], r: &ServiceRef) -> Result<u64, String> {
    match r {
        ServiceRef::Id(id) => services
            .iter()
            .any(|(i, _)| i == id)
            .then_some(*id)
            .ok_or_else(|| format!("no service with id {id}")),
        ServiceRef::Name(name) => {
            let ids: Vec<u64> = services
                .iter()
                .filter(|(_, n)| n == name)
                .map(|(i, _)| *i)
                .collect();
            match ids.as_slice() {
                [] => Err(format!("no service named {name:?}")),
                [id] => Ok(*id),
                many => Err(format!(
                    "ambiguous name {name:?}: services {} share it; use the id",
                    many.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceRef {
        ServiceRef::Name(s.into())
    }

    #[test]
    fn good_requests() {
        let table: &[(&str, Request)] = &[
            (r#"{"cmd":"status"}"#, Request::Status),
            (r#"{"cmd":"status","protocol":1}"#, Request::Status),
            ("{\"cmd\":\"reload\"}\n", Request::Reload),
            ("{\"cmd\":\"stop\"}\r\n", Request::Stop),
            (r#" { "cmd" : "metrics" } "#, Request::Metrics),
            (
                r#"{"cmd":"scale","service":"api","workers":4}"#,
                Request::Scale {
                    service: name("api"),
                    workers: 4,
                },
            ),
            (
                r#"{"cmd":"scale","service":3,"workers":0}"#,
                Request::Scale {
                    service: ServiceRef::Id(3),
                    workers: 0,
                },
            ),
            (
                r#"{"cmd":"scale","service":"api","workers":10000}"#,
                Request::Scale {
                    service: name("api"),
                    workers: MAX_WORKERS_PER_SERVICE,
                },
            ),
            (
                r#"{"cmd":"restart","service":"api","worker":1}"#,
                Request::Restart {
                    service: name("api"),
                    worker: 1,
                },
            ),
            (
                r#"{"cmd":"restart","service":0,"worker":9999}"#,
                Request::Restart {
                    service: ServiceRef::Id(0),
                    worker: 9999,
                },
            ),
        ];
        for (line, want) in table {
            assert_eq!(parse_request(line.as_bytes()).as_ref(), Ok(want), "{line}");
            // to_line round-trips.
            assert_eq!(parse_request(want.to_line().as_bytes()).as_ref(), Ok(want));
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let table: &[(&[u8], &str)] = &[
            (b"", "empty request"),
            (b"  \r\n", "empty request"),
            (b"{", "malformed JSON"),
            (b"{\"cmd\":\"status\"} x", "malformed JSON"),
            (b"\xff\xfe", "malformed JSON"),
            (b"[\"status\"]", "must be a JSON object"),
            (b"\"status\"", "must be a JSON object"),
            (b"{}", "missing \"cmd\""),
            (b"{\"cmd\":7}", "\"cmd\" must be a string, not a number"),
            (
                b"{\"cmd\":\"statuz\"}",
                "unknown command \"statuz\" (expected one of",
            ),
            (b"{\"cmd\":\"STATUS\"}", "unknown command \"STATUS\""),
            (
                b"{\"cmd\":\"status\",\"protocol\":2}",
                "protocol 2 is not supported",
            ),
            (
                b"{\"cmd\":\"status\",\"protocol\":\"1\"}",
                "protocol \"1\" is not supported",
            ),
            (
                b"{\"cmd\":\"status\",\"verbose\":true}",
                "unknown field \"verbose\" for command \"status\"",
            ),
            (
                b"{\"cmd\":\"scale\",\"workers\":4}",
                "\"scale\" needs \"service\"",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\"}",
                "\"scale\" needs \"workers\"",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"worker\":4}",
                "\"scale\" needs \"workers\"",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":4,\"worker\":1}",
                "unknown field \"worker\"",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":\"4\"}",
                "\"workers\" must be an integer, not a string",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":4.5}",
                "\"workers\" must be an integer, not 4.5",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":1e3}",
                "\"workers\" must be an integer",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":null}",
                "\"workers\" must be an integer, not null",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":-1}",
                "\"workers\" must not be negative (got -1)",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":10001}",
                "\"workers\" out of range: 10001 (the limit is 10000)",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":18446744073709551615}",
                "\"workers\" out of range",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"api\",\"workers\":99999999999999999999999}",
                "\"workers\" must be an integer",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":\"\",\"workers\":1}",
                "\"service\" must not be empty",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":-3,\"workers\":1}",
                "\"service\" id must be a non-negative integer, not -3",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":1.5,\"workers\":1}",
                "\"service\" id must be a non-negative integer",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":[1],\"workers\":1}",
                "\"service\" must be a service id (integer) or name (string), not an array",
            ),
            (
                b"{\"cmd\":\"scale\",\"service\":true,\"workers\":1}",
                "not a boolean",
            ),
            (
                b"{\"cmd\":\"restart\",\"service\":\"api\"}",
                "\"restart\" needs \"worker\"",
            ),
            (
                b"{\"cmd\":\"restart\",\"worker\":0}",
                "\"restart\" needs \"service\"",
            ),
            (
                b"{\"cmd\":\"restart\",\"service\":\"api\",\"worker\":-1}",
                "\"worker\" must not be negative",
            ),
            (
                b"{\"cmd\":\"restart\",\"service\":\"api\",\"worker\":10000}",
                "\"worker\" out of range: 10000 (the limit is 9999)",
            ),
            (
                b"{\"cmd\":\"restart\",\"service\":\"api\",\"worker\":{}}",
                "\"worker\" must be an integer, not an object",
            ),
        ];
        for (line, want) in table {
            let got = parse_request(line).expect_err(&String::from_utf8_lossy(line));
            assert!(
                got.contains(want),
                "{:?}: got {got:?}, want it to contain {want:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn replies() {
        assert_eq!(reply_ok(Map::new()), r#"{"ok":true,"protocol":1}"#);
        let mut m = Map::new();
        m.insert("x".into(), 1.into());
        m.insert("ok".into(), false.into()); // cannot override
        assert_eq!(reply_ok(m), r#"{"ok":true,"protocol":1,"x":1}"#);
        assert_eq!(
            reply_error("bad \"thing\"\n"),
            r#"{"ok":false,"protocol":1,"error":"bad \"thing\"\n"}"#
        );
        assert_eq!(
            metrics_reply("a 1\n"),
            r#"{"ok":true,"protocol":1,"metrics":"a 1\n"}"#
        );
        assert_eq!(
            parse_reply(reply_error("nope").as_bytes()),
            Ok(Reply::Error("nope".into()))
        );
        let Ok(Reply::Ok(p)) = parse_reply(metrics_reply("m").as_bytes()) else {
            panic!("not ok")
        };
        assert_eq!(p.get("metrics"), Some(&Value::from("m")));
        for (bad, want) in [
            (&b"nope"[..], "malformed reply"),
            (b"[]", "not a JSON object"),
            (b"{\"ok\":true}", "no \"protocol\""),
            (b"{\"ok\":true,\"protocol\":2}", "speaks protocol 2"),
            (b"{\"protocol\":1}", "no boolean \"ok\""),
        ] {
            let got = parse_reply(bad).unwrap_err();
            assert!(got.contains(want), "{got}");
        }
    }

    #[test]
    fn status_reply_carries_the_status() {
        use crate::status::*;
        let s = Status {
            pid: 7,
            state: ManagerState::Running,
            started_at: 1.5,
            services: vec![],
            limiter: LimiterStatus {
                waiting: false,
                until: None,
            },
            init_pid: None,
            stopped_by: None,
        };
        let line = status_reply(&s);
        assert!(
            line.starts_with(r#"{"ok":true,"protocol":1,"status":{"#),
            "{line}"
        );
        let Ok(Reply::Ok(mut p)) = parse_reply(line.as_bytes()) else {
            panic!("{line}")
        };
        let back: Status = serde_json::from_value(p.remove("status").unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn resolve_by_id_and_name() {
        let services = [(0, "api"), (1, "jobs"), (4, "dup"), (7, "dup")];
        assert_eq!(resolve(&services, &ServiceRef::Id(1)), Ok(1));
        assert_eq!(resolve(&services, &name("api")), Ok(0));
        assert_eq!(
            resolve(&services, &ServiceRef::Id(2)),
            Err("no service with id 2".into())
        );
        assert_eq!(
            resolve(&services, &name("web")),
            Err("no service named \"web\"".into())
        );
        assert_eq!(
            resolve(&services, &name("dup")),
            Err("ambiguous name \"dup\": services 4, 7 share it; use the id".into())
        );
        // An id wins even when a name looks like a number.
        assert_eq!(
            resolve(&[(5, "1")], &ServiceRef::Id(1)),
            Err("no service with id 1".into())
        );
        assert_eq!(resolve(&[(5, "1")], &name("1")), Ok(5));
    }
}
