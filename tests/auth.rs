//! Login and single-use refresh tokens.

use crate::helpers::{
    App, Mode,
    app::{ADMIN, ADMIN_PASSWORD},
};

#[tokio::test(flavor = "multi_thread")]
async fn login_refresh_once_and_reuse_revokes_the_family() {
    let app = App::start(Mode::SingleNode).await;
    let (s, b) = app.try_login(ADMIN, "wrong-password").await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = app.try_login("nobody", "x").await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["error"]["message"], "invalid username or password");

    let (s, b) = app.try_login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["token_type"], "Bearer");
    assert!(b["data"]["expires_in"].as_u64().unwrap() > 0);
    let refresh = b["data"]["refresh_token"].as_str().unwrap().to_string();

    // The refresh token is not an access token.
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&refresh), None).await;
    assert_eq!(s, 401);

    let (s, b) = app.refresh(&refresh).await;
    assert_eq!(s, 200, "{b}");
    let second = b["data"]["refresh_token"].as_str().unwrap().to_string();
    let access = b["data"]["access_token"].as_str().unwrap().to_string();
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&access), None).await;
    assert_eq!(s, 200);

    // Using the first one again is a replay: refused, and the whole family is revoked.
    let (s, b) = app.refresh(&refresh).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = app.refresh(&second).await;
    assert_eq!(s, 401, "the descendant token is revoked too: {b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_whole_login_and_a_reused_refresh_token_ends_its_access_tokens() {
    let app = App::start(Mode::SingleNode).await;

    // Logout with an empty body: the login's refresh token is revoked with its access tokens.
    let (s, b) = app.try_login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    let access = b["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = b["data"]["refresh_token"].as_str().unwrap().to_string();
    let (s, b) = app
        .call(
            "POST",
            "/api/v1/auth/logout",
            Some(&access),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app.refresh(&refresh).await;
    assert_eq!(s, 401, "the logged-out login's refresh token: {b}");
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&access), None).await;
    assert_eq!(s, 401);

    // A refresh token presented twice: the access tokens issued from the login stop working.
    let (s, b) = app.try_login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s, 200, "{b}");
    let first_access = b["data"]["access_token"].as_str().unwrap().to_string();
    let stolen = b["data"]["refresh_token"].as_str().unwrap().to_string();
    let (s, b) = app.refresh(&stolen).await;
    assert_eq!(s, 200, "{b}");
    let thief_access = b["data"]["access_token"].as_str().unwrap().to_string();
    let (s, _) = app
        .call("GET", "/api/v1/tasks", Some(&thief_access), None)
        .await;
    assert_eq!(s, 200);
    let (s, b) = app.refresh(&stolen).await;
    assert_eq!(s, 401, "{b}");
    for token in [&first_access, &thief_access] {
        let (s, b) = app.call("GET", "/api/v1/tasks", Some(token), None).await;
        assert_eq!(s, 401, "an access token of the reused login: {b}");
    }
    // Other logins of the same user are not affected.
    let (s, _) = app
        .call("GET", "/api/v1/tasks", Some(&app.admin_token), None)
        .await;
    assert_eq!(s, 200);
}

/// The user id an access token names.
fn subject(token: &str) -> String {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["mcp-api"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(crate::helpers::app::JWT_SECRET.as_bytes()),
        &validation,
    )
    .expect("a token the API issued");
    data.claims["sub"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_disables_demotes_and_signs_out_a_user_and_old_tokens_stop_working() {
    // Revocations live in the process on a single node and in Redis across replicas.
    for mode in [Mode::SingleNode, Mode::Distributed] {
        user_changes_take_effect_at_once(mode).await;
    }
}

async fn user_changes_take_effect_at_once(mode: Mode) {
    use serde_json::json;
    let app = App::start(mode).await;
    let password = "olive-password-123";
    let (s, b) = app
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "olive", "password": password, "role": "operator"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["data"]["disabled"], false);
    let id = b["data"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/users/{id}");
    let (s, b) = app.try_login("olive", password).await;
    assert_eq!(s, 200, "{b}");
    let access = b["data"]["access_token"].as_str().unwrap().to_string();
    let refresh = b["data"]["refresh_token"].as_str().unwrap().to_string();
    let task = json!({"type": "generic", "payload": {}});
    let (s, b) = app
        .call("POST", "/api/v1/tasks", Some(&access), Some(task.clone()))
        .await;
    assert_eq!(s, 201, "an operator creates tasks: {b}");

    // Only admins change users, and bad input changes nothing.
    let (s, b) = app
        .call(
            "PATCH",
            &path,
            Some(&access),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    let (s, b) = app
        .admin("PATCH", &path, Some(json!({"role": "agent"})))
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["details"]["field"], "role");
    let (s, b) = app
        .admin("PATCH", &path, Some(json!({"role": "root"})))
        .await;
    assert!(s == 400 || s == 422, "{s} {b}");
    assert_eq!(b["success"], false);
    let (s, b) = app
        .admin(
            "PATCH",
            "/api/v1/users/0190c0de-0000-7000-8000-000000000000",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{b}"
    );
    let (s, _) = app
        .call("POST", "/api/v1/tasks", Some(&access), Some(task.clone()))
        .await;
    assert_eq!(s, 201, "refused changes left the user's token working");

    // A role change takes effect at once: the tokens issued under the old role are revoked.
    let (s, b) = app
        .admin("PATCH", &path, Some(json!({"role": "viewer"})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["role"], "viewer");
    assert_eq!(b["data"]["tokens_revoked"], true);
    let (s, b) = app.call("GET", "/api/v1/tasks", Some(&access), None).await;
    assert_eq!(s, 401, "a token issued to the operator: {b}");
    let (s, b) = app.refresh(&refresh).await;
    assert_eq!(s, 401, "a refresh token issued to the operator: {b}");
    let viewer = app.login("olive", password).await;
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&viewer), None).await;
    assert_eq!(s, 200);
    let (s, _) = app
        .call("POST", "/api/v1/tasks", Some(&viewer), Some(task.clone()))
        .await;
    assert_eq!(s, 403, "the new login has the new role");

    // Disabled: the still-valid access token is refused, and so is a new login.
    let (s, b) = app
        .admin("PATCH", &path, Some(json!({"disabled": true})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["disabled"], true);
    let (s, b) = app.call("GET", "/api/v1/tasks", Some(&viewer), None).await;
    assert_eq!(s, 401, "a disabled user's token: {b}");
    let (s, _) = app.try_login("olive", password).await;
    assert_eq!(s, 401);

    // Enabled again: logins work; `revoke_tokens` signs the user out everywhere.
    let (s, b) = app
        .admin("PATCH", &path, Some(json!({"disabled": false})))
        .await;
    assert_eq!(
        (s, b["data"]["disabled"].as_bool()),
        (200, Some(false)),
        "{b}"
    );
    let again = app.login("olive", password).await;
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&again), None).await;
    assert_eq!(s, 200);
    let (s, b) = app
        .admin("PATCH", &path, Some(json!({"revoke_tokens": true})))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = app.call("GET", "/api/v1/tasks", Some(&again), None).await;
    assert_eq!(s, 401, "signed out everywhere");

    // The last enabled admin can be neither disabled nor demoted.
    let admin_path = format!("/api/v1/users/{}", subject(&app.admin_token));
    for change in [json!({"disabled": true}), json!({"role": "operator"})] {
        let (s, b) = app.admin("PATCH", &admin_path, Some(change)).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (409, Some("conflict")),
            "{b}"
        );
    }
    let (s, _) = app.admin("GET", "/api/v1/tasks", None).await;
    assert_eq!(s, 200, "the admin is untouched");

    // Every change is in the audit trail, with what it changed.
    for (action, field, from, to) in [
        (
            "user.role_change",
            "role",
            json!("operator"),
            json!("viewer"),
        ),
        ("user.disable", "disabled", json!(false), json!(true)),
        ("user.enable", "disabled", json!(true), json!(false)),
    ] {
        let (s, b) = app
            .admin("GET", &format!("/api/v1/audit?action={action}"), None)
            .await;
        assert_eq!(s, 200, "{b}");
        let records = b["data"].as_array().unwrap();
        assert_eq!(records.len(), 1, "{action}: {records:?}");
        assert_eq!(records[0]["actor"], "admin:admin");
        assert_eq!(records[0]["target"], id.as_str());
        assert_eq!(records[0]["details"][field]["from"], from, "{records:?}");
        assert_eq!(records[0]["details"][field]["to"], to, "{records:?}");
    }
    let (s, b) = app
        .admin("GET", "/api/v1/audit?action=user.revoke_tokens", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().unwrap().len(), 1, "{b}");
}
