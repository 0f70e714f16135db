//! The admin page in a real browser: headless Chromium (Debian package `chromium`) loads `/` from a running
//! gatewayd with open connections and subscriptions, runs the page's script, and the numbers it renders match
//! `/api/connections`, `/api/topics`, `/api/listeners` and `/api/cluster`.

mod support;

#[path = "support/ctl.rs"]
mod ctl;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::Command;

use support::*;

/// The page as Chromium renders it once its script has run.
fn rendered(url: &str) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("run chromium (Debian package chromium; scripts/test.sh installs it)");
    assert_succeeded(&output, "chromium");
    String::from_utf8(output.stdout).expect("utf-8 DOM")
}

/// The text of the cell with `class` in the row whose `data-<key>` is `value`.
fn cell(dom: &str, key: &str, value: &str, class: &str) -> Option<String> {
    let row_start = dom.find(&format!("<tr data-{key}=\"{value}\""))?;
    let row = &dom[row_start..row_start + dom[row_start..].find("</tr>")?];
    let at = row.find(&format!("class=\"{class}\">"))? + class.len() + 9;
    Some(row[at..at + row[at..].find('<')?].to_owned())
}

#[test]
fn the_page_shows_what_the_api_says() {
    let gateway = Gatewayd::start(&config_enabling(&["stomp.tcp", "goomerang", "chanserv"]));
    let chanserv = gateway.listener("chanserv.tcp");
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(chanserv).expect("connect"))
        .collect();
    let subscriber = ctl::spawn(
        &gateway,
        &["sub", "-p", "stomp", "page.orders", "--count", "1"],
    );
    ctl::wait_subscribed(&gateway, "page.orders", 1, 0);
    wait_connection_count(&gateway, 3);

    let dom = rendered(&gateway.url("/"));
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page did not load its data: {dom}"
    );

    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for connection in gateway
        .get_json("/api/connections")
        .as_array()
        .expect("list")
    {
        *open
            .entry(
                connection["protocol"]
                    .as_str()
                    .expect("protocol")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    for protocol in PROTOCOLS {
        let shown = cell(&dom, "protocol", protocol, "num count")
            .unwrap_or_else(|| panic!("no connection count for {protocol}: {dom}"));
        assert_eq!(
            shown,
            open.get(protocol).copied().unwrap_or(0).to_string(),
            "{protocol}"
        );
    }
    assert_eq!(open.get("chanserv"), Some(&2));

    for topic in gateway.get_json("/api/topics").as_array().expect("topics") {
        let name = topic["topic"].as_str().expect("topic");
        assert_eq!(
            cell(&dom, "topic", name, "num subscribers"),
            Some(topic["fanout_subscribers"].to_string()),
            "{name}"
        );
    }
    assert!(dom.contains("<tr data-topic=\"page.orders\""), "{dom}");

    for listener in gateway
        .get_json("/api/listeners")
        .as_array()
        .expect("listeners")
    {
        let name = listener["name"].as_str().expect("name");
        assert!(
            dom.contains(&format!("<tr data-listener=\"{name}\"")),
            "{name} missing"
        );
    }
    let state = gateway.get_json("/api/cluster")["state"]
        .as_str()
        .expect("state")
        .to_owned();
    assert!(
        dom.contains(&format!("data-state=\"{state}\"")),
        "cluster {state}: {dom}"
    );

    ctl::run(&gateway, &["pub", "-p", "stomp", "page.orders", "done"]);
    assert!(ctl::finish(subscriber).status.success());
}

#[test]
fn the_page_is_served_without_the_token_and_asks_for_it() {
    let gateway = Gatewayd::start("[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"page-token\"\n");
    let (status, body) = gateway.get("/");
    assert_eq!(status, 200);
    assert!(body.contains("id=\"token-form\""));
    let dom = rendered(&gateway.url("/"));
    assert!(dom.contains("the admin token is needed"), "{dom}");
    assert!(!dom.contains("data-loaded=\"true\""));
}
