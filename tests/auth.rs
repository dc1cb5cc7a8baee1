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
