//! The token a WebSocket upgrade request carries, from its `Authorization` header or its query.

/// The token a WebSocket upgrade carries: `Authorization: Bearer <token>`, else the query parameter
/// `access_token` (percent-decoded), for clients that cannot set headers.
pub fn upgrade_token(request: &http::Request<()>) -> Option<String> {
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    header.or_else(|| {
        request.uri().query()?.split('&').find_map(|pair| {
            let value = pair.strip_prefix(ACCESS_TOKEN)?.strip_prefix('=')?;
            percent_decode(value)
        })
    })
}

/// The query parameter of [`upgrade_token`].
pub const ACCESS_TOKEN: &str = "access_token";

/// `%XX` and `+` decoding of a query value; `None` if it is not valid UTF-8 or has a bad escape.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
