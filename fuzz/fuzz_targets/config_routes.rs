//! Fuzzes the config file reader with arbitrary TOML text: `Config::parse` (TOML, then every
//! rule of `Config::check`), the route table built from it, and route lookup with arbitrary
//! addresses.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mailcall_core::config::Config;
use mailcall_core::routing::{Pattern, RouteTable};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzzed.toml");
    let config = match Config::parse(text, path) {
        Ok(config) => config,
        Err(e) => {
            // The error names the file and says what to do.
            let message = e.to_string();
            assert!(message.contains("fuzzed.toml"), "{message}");
            return;
        }
    };
    // What was taken is written back as a file that reads back as the same settings.
    let written = config.to_string();
    let again = Config::parse(&written, path)
        .unwrap_or_else(|e| panic!("{text:?} written as {written:?} does not read back: {e}"));
    assert_eq!(
        again, config,
        "{text:?} written as {written:?} reads back different"
    );

    let Ok(table) = config.route_table() else {
        return;
    };
    check_table(&table);
    // Arbitrary addresses: lookup never panics, whatever the recipient looks like.
    for line in text.lines().take(64) {
        let _ = table.lookup(line);
    }
});

/// Each route is found for the recipients it names, most specific first.
fn check_table(table: &RouteTable) {
    let has_any = table.routes().iter().any(|r| r.pattern == Pattern::Any);
    for route in table.routes() {
        // A pattern reads back as itself.
        let shown = route.pattern.to_string();
        assert_eq!(
            shown.parse::<Pattern>().ok().as_ref(),
            Some(&route.pattern),
            "{shown:?}"
        );
        match &route.pattern {
            Pattern::Address(address) => {
                let found = table.lookup(address).expect("an address route is found");
                assert_eq!(&found.pattern, &route.pattern, "{address}");
            }
            Pattern::Domain(domain) => {
                // A local part no address route can have (routes hold no blanks): the domain's.
                let probe = format!("no one@{domain}");
                let found = table.lookup(&probe).expect("a domain route is found");
                assert_eq!(&found.pattern, &route.pattern, "{probe}");
            }
            Pattern::Any => {}
        }
    }
    // A recipient no address or domain route can name goes to `*`, or nowhere without one.
    let found = table.lookup("no one@no domain");
    assert_eq!(found.is_some(), has_any);
    if let Some(found) = found {
        assert_eq!(found.pattern, Pattern::Any);
    }
}
