//! The HTTP side: the API's envelopes, errors mapped to exit codes, and the stored session's
//! access token refreshed when it has expired (or the server says it has).

use std::{path::PathBuf, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    config::{Config, Credentials, now_unix},
    error::{Error, Result},
};

/// Refresh this long before the server would refuse the token, so a request in flight does not
/// race its expiry.
const REFRESH_MARGIN_SECS: u64 = 30;

enum Auth {
    /// `--token` / `MCP_TOKEN`: used as is.
    Fixed(String),
    /// From `mcpctl login`, refreshed and re-saved as needed.
    Stored {
        creds: Credentials,
        path: PathBuf,
    },
    None,
}

pub struct Client {
    http: reqwest::Client,
    pub base: String,
    auth: Auth,
}

/// A response: status, JSON body (`Null` when there is none) and `Retry-After` seconds.
pub struct Response {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl Client {
    fn http() -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("mcpctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::usage(format!("cannot build the HTTP client: {e}")))
    }

    /// A client without credentials (for `login`).
    pub fn anonymous(config: &Config) -> Result<Self> {
        Ok(Self {
            http: Self::http()?,
            base: config.url.clone(),
            auth: Auth::None,
        })
    }

    /// A client with the configured token or the stored session; a missing session is an
    /// authentication error naming the fix.
    pub fn authenticated(config: &Config) -> Result<Self> {
        let auth = if let Some(t) = &config.token {
            Auth::Fixed(t.clone())
        } else {
            let path = config.credentials_path();
            match Credentials::load(&path)? {
                Some(creds) if creds.url == config.url => Auth::Stored { creds, path },
                Some(creds) => {
                    return Err(Error::auth(format!(
                        "the stored session is for {}, not {}; run mcpctl login --url {}",
                        creds.url, config.url, config.url
                    )));
                }
                None => {
                    return Err(Error::auth(format!(
                        "not logged in to {}; run mcpctl login (or set MCP_TOKEN)",
                        config.url
                    )));
                }
            }
        };
        Ok(Self {
            http: Self::http()?,
            base: config.url.clone(),
            auth,
        })
    }

    /// The `ws://` or `wss://` URL of a WebSocket path.
    pub fn ws_url(&self, path: &str) -> String {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base.trim_start_matches("http://"))
        };
        format!("{base}{path}")
    }

    /// The bearer token to send now, refreshed first when it is about to expire.
    pub async fn token(&mut self) -> Result<Option<String>> {
        if let Auth::Stored { creds, .. } = &self.auth
            && creds.expires_at <= now_unix() + REFRESH_MARGIN_SECS
        {
            self.refresh().await?;
        }
        Ok(match &self.auth {
            Auth::Fixed(t) => Some(t.clone()),
            Auth::Stored { creds, .. } => Some(creds.access_token.clone()),
            Auth::None => None,
        })
    }

    async fn refresh(&mut self) -> Result<()> {
        let Auth::Stored { creds, path } = &mut self.auth else {
            return Ok(());
        };
        // Another mcpctl may have refreshed already, spending the refresh token we hold: its
        // saved session is the one to use.
        if let Ok(Some(saved)) = Credentials::load(path)
            && saved.url == creds.url
            && saved.refresh_token != creds.refresh_token
            && saved.expires_at > now_unix() + REFRESH_MARGIN_SECS
        {
            *creds = saved;
            return Ok(());
        }
        let resp = send_once(
            &self.http,
            &self.base,
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(&json!({"refresh_token": creds.refresh_token})),
        )
        .await?;
        if resp.status == 401 {
            return Err(Error::auth(
                "the session has expired (the refresh token was refused); run mcpctl login",
            ));
        }
        let data = ok_data(resp)?;
        let tokens = Tokens::from_data(&data)?;
        creds.access_token = tokens.access_token;
        creds.refresh_token = tokens.refresh_token;
        creds.expires_at = tokens.expires_at;
        // A refresh token works once: save the new one before anything else can fail.
        creds.save(path)
    }

    /// Sends a request; a 401 on a stored session refreshes the token and tries once more.
    /// Transport failures become [`Exit::Server`]; HTTP errors are left to the caller.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response> {
        let token = self.token().await?;
        let resp = send_once(
            &self.http,
            &self.base,
            method.clone(),
            path,
            token.as_deref(),
            body,
        )
        .await?;
        if resp.status == 401 && matches!(self.auth, Auth::Stored { .. }) {
            self.refresh().await?;
            let token = self.token().await?;
            return send_once(&self.http, &self.base, method, path, token.as_deref(), body).await;
        }
        Ok(resp)
    }

    /// Sends a request and returns the success envelope, or the error mapped to an exit code.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let resp = self.send(method, path, body).await?;
        ok_envelope(resp)
    }

    pub async fn get(&mut self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None)
            .await
            .map(|mut e| e["data"].take())
    }

    /// Logs in and returns the new session.
    pub async fn login(&self, username: &str, password: &str) -> Result<Credentials> {
        let resp = send_once(
            &self.http,
            &self.base,
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"username": username, "password": password})),
        )
        .await?;
        let tokens = Tokens::from_data(&ok_data(resp)?)?;
        Ok(Credentials {
            url: self.base.clone(),
            username: username.to_string(),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            expires_at: tokens.expires_at,
        })
    }
}

struct Tokens {
    access_token: String,
    refresh_token: String,
    expires_at: u64,
}

impl Tokens {
    fn from_data(data: &Value) -> Result<Self> {
        let field = |name: &str| {
            data[name]
                .as_str()
                .map(String::from)
                .ok_or_else(|| Error::server(format!("the server's token answer has no {name}")))
        };
        Ok(Self {
            access_token: field("access_token")?,
            refresh_token: field("refresh_token")?,
            expires_at: now_unix() + data["expires_in"].as_u64().unwrap_or(0),
        })
    }
}

async fn send_once(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Response> {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Error::server(format!("cannot reach {base}: {}", root_cause(&e))))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let text = resp.text().await.map_err(|e| {
        Error::server(format!(
            "reading the answer from {base}: {}",
            root_cause(&e)
        ))
    })?;
    Ok(Response {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        retry_after,
    })
}

/// The innermost error, which names the actual problem (connection refused, timed out, …).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The envelope of a 2xx answer, or the API error as an [`Error`] with its exit code.
pub fn ok_envelope(resp: Response) -> Result<Value> {
    if (200..300).contains(&resp.status) {
        return Ok(resp.body);
    }
    Err(api_error(&resp))
}

fn ok_data(resp: Response) -> Result<Value> {
    ok_envelope(resp).map(|mut e| e["data"].take())
}

/// An HTTP error answer as an [`Error`]: the API's code and message, the field at fault, and
/// the request id to quote to an operator.
pub fn api_error(resp: &Response) -> Error {
    let err = &resp.body["error"];
    let code = err["code"].as_str().unwrap_or("http_error");
    let mut message = err["message"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("the server answered HTTP {}", resp.status));
    if let Some(field) = err["details"]["field"].as_str()
        && !message.contains(field)
    {
        message = format!("{message} (field {field})");
    }
    let mut text = format!("{code}: {message}");
    if let Some(id) = resp.body["request_id"].as_str() {
        text.push_str(&format!(" [request {id}]"));
    }
    Error::new(Error::exit_for_status(resp.status), text)
}
