//! Checks of the harness's own HTML reading, so a template change fails here first.

use crate::common::*;

#[test]
fn login_form_is_the_password_form_even_after_other_forms() {
    let html = r#"<form id="plex" method="post" action="http:&#x2f;&#x2f;x&#x2f;login&#x2f;plex">
<input type="hidden" name="flow" value="PLEX"><input type="hidden" name="csrf" value="PC"></form>
<form method="post" action="http:&#x2f;&#x2f;x&#x2f;login&#x2f;password">
<input type="hidden" name="flow" value="a&amp;b"><input type="hidden" name="csrf" value="c&#x2b;d">
<input name="username" value=""><input id="password" name="password" type="password"></form>"#;
    let f = LoginForm::parse(html).unwrap();
    assert_eq!(f.action, "http://x/login/password");
    assert_eq!(f.flow, "a&b");
    assert_eq!(f.csrf, "c+d");
    assert!(LoginForm::parse("<form action=\"x\"></form>").is_none());
    assert_eq!(
        form_action("<form action=\"&lt;&#47;&gt;\">").as_deref(),
        Some("</>")
    );
    assert_eq!(html_unescape("a &unknown; & b&#x41;"), "a &unknown; & bA");
}
