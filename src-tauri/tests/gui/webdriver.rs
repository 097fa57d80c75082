//! A minimal W3C WebDriver client over a plain blocking HTTP/1.1 connection to tauri-driver:
//! sessions, elements, clicks, typing, text and scripts — what the GUI test uses (screenshots are
//! taken of the whole X screen instead: WebKit's own hung here with compositing off).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session on tauri-driver (which starts the app binary for it).
pub struct WebDriver {
    port: u16,
    session: String,
}

/// A found element.
#[derive(Debug, Clone)]
pub struct Element(String);

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    // tauri-driver proxies over a pooled connection to WebKitWebDriver; when that one went stale
    // the request is cancelled before it is sent and we get an empty reply: send it again.
    let mut last = String::new();
    for _ in 0..4 {
        match http_once(port, method, path, body) {
            Err(e) if e.ends_with(EMPTY_REPLY) => last = e,
            other => return other,
        }
    }
    Err(last)
}

const EMPTY_REPLY: &str = "empty reply";

fn http_once(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("cannot reach tauri-driver on {port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{method} {path}: reading the reply: {e}"))?;
    if raw.is_empty() {
        return Err(format!("{method} {path}: {EMPTY_REPLY}"));
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP header in {text:?}"))?;
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let value: Value = serde_json::from_str(&payload)
        .map_err(|e| format!("{method} {path}: bad JSON ({e}): {payload:.300}"))?;
    let status_ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    if !status_ok {
        return Err(format!("{method} {path}: {}", value["value"]));
    }
    Ok(value["value"].clone())
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        let Some((size, after)) = rest.split_once("\r\n") else {
            break;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

impl WebDriver {
    /// Opens a session: tauri-driver starts `application` with `args`.
    pub fn start(port: u16, application: &str, args: &[&str]) -> Result<Self, String> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application, "args": args}
        }}});
        let v = http(port, "POST", "/session", Some(&caps))?;
        let session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {v}"))?
            .to_string();
        Ok(WebDriver { port, session })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        )
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Result<Element, String> {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_string()))
            .ok_or_else(|| format!("no element for {css}: {v}"))
    }

    /// Clicks the element matching `css` (a DOM click: WebKitWebDriver's native click dropped
    /// the connection on some buttons here).
    pub fn click(&self, css: &str) -> Result<(), String> {
        let el = self.find(css)?;
        self.execute(
            "arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
            json!([{ELEMENT_KEY: el.0}]),
        )
        .map(|_| ())
    }

    /// Replaces the text of the input matching `css` by typing `text`.
    pub fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let el = self.find(css)?;
        self.call("POST", &format!("/element/{}/clear", el.0), Some(json!({})))?;
        if !text.is_empty() {
            self.call(
                "POST",
                &format!("/element/{}/value", el.0),
                Some(json!({"text": text})),
            )?;
        }
        Ok(())
    }

    /// The visible text of the element matching `css`.
    pub fn text(&self, css: &str) -> Result<String, String> {
        let el = self.find(css)?;
        let v = self.call("GET", &format!("/element/{}/text", el.0), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Runs a script in the page and returns its result.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Ends the session (tauri-driver then stops the app).
    pub fn quit(self) -> Result<(), String> {
        http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .map(|_| ())
    }
}
