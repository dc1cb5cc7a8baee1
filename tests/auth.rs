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
