//! The API's route templates (`/api/v1/tasks/{id}`), read from the OpenAPI document plus the
//! routes served beside it. Built once at start, from the spec, and handed to whoever needs it:
//! one matcher serves the metrics labels, the audit trail's action names and the `Allow` header
//! of a 405, so raw paths (ids, or a scanner's junk) never become labels or records.

/// The label of any path that matches no route (scanners, typos): one series, not one per path.
pub const UNMATCHED: &str = "unmatched";

/// Routes that live beside the OpenAPI service, with their method.
const EXTRA_ROUTES: &[(&str, &str)] = &[
    ("/metrics", "GET"),
    ("/openapi.json", "GET"),
    ("/docs", "GET"),
    ("/ws/tasks/{id}", "GET"),
    ("/ws/agents/status", "GET"),
    ("/ws/tasks/progress", "GET"),
    ("/ws/pipeline/updates", "GET"),
    ("/ws/system/events", "GET"),
    ("/mcp", "POST"),
];

/// The known route templates, split into segments; `{…}` matches any one segment.
#[derive(Debug)]
pub struct RouteTemplates {
    templates: Vec<(&'static str, Vec<&'static str>, Vec<&'static str>)>,
}

impl RouteTemplates {
    /// From the OpenAPI document's paths plus the routes served beside it.
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut paths: Vec<(String, Vec<&'static str>)> = spec["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(m, _)| method_name(m))
                    .collect();
                (path.clone(), methods)
            })
            .collect();
        for (extra, method) in EXTRA_ROUTES {
            if !paths.iter().any(|(p, _)| p == extra) {
                paths.push((extra.to_string(), vec![*method]));
            }
        }
        paths.sort();
        // Leaked once at start: labels are then `&'static str`, copied by pointer per request.
        let templates = paths
            .into_iter()
            .map(|(p, methods)| {
                let p: &'static str = Box::leak(p.into_boxed_str());
                (p, p.split('/').collect(), methods)
            })
            .collect();
        Self { templates }
    }

    /// The template `path` matches; literal segments beat placeholders (`/tasks/batch` over
    /// `/tasks/{id}`). Anything under `/docs` is `/docs`.
    pub fn template(&self, path: &str) -> &'static str {
        self.find(path).map_or(UNMATCHED, |(t, _)| t)
    }

    /// The `Allow` header of a 405 (RFC 9110 requires it): the methods the matching route
    /// serves.
    pub fn allowed_methods(&self, path: &str) -> String {
        self.find(path)
            .map(|(_, methods)| methods.join(", "))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "GET".to_string())
    }

    fn find(&self, path: &str) -> Option<(&'static str, &[&'static str])> {
        if path == "/docs" || path.starts_with("/docs/") {
            return Some(("/docs", &["GET"]));
        }
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(&'static str, &[&'static str], usize)> = None;
        for (template, parts, methods) in &self.templates {
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let matches = parts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    !s.is_empty()
                } else if t == s {
                    literal += 1;
                    true
                } else {
                    false
                }
            });
            if matches && best.is_none_or(|(_, _, l)| literal > l) {
                best = Some((template, methods, literal));
            }
        }
        best.map(|(t, m, _)| (t, m))
    }
}

fn method_name(m: &str) -> Option<&'static str> {
    Some(match m {
        "get" => "GET",
        "post" => "POST",
        "put" => "PUT",
        "patch" => "PATCH",
        "delete" => "DELETE",
        "head" => "HEAD",
        "options" => "OPTIONS",
        _ => return None,
    })
}
