//! The minijinja environment (built once) and the embedded assets.

use minijinja::{Environment, Value};

/// The layout every page extends (also offered to hosts through [`crate::Shell`]).
pub(crate) const LAYOUT: &str = include_str!("../templates/layout.html");

const TEMPLATES: [(&str, &str); 5] = [
    ("layout.html", LAYOUT),
    ("runs.html", include_str!("../templates/runs.html")),
    ("run.html", include_str!("../templates/run.html")),
    ("jobs.html", include_str!("../templates/jobs.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// `(name, content type, body)` of every embedded asset.
pub(crate) const ASSETS: [(&str, &str, &str); 2] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
];

/// A short hash of the embedded assets, added to their URLs (`?v=…`) so that browsers
/// holding a cached copy fetch the new one after an upgrade.
pub(crate) fn asset_version() -> String {
    // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, _, body) in ASSETS {
        for b in body.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", h as u32)
}

/// The templates, parsed once. Names end in `.html`, so minijinja escapes every value
/// for HTML unless a template says otherwise (none does).
#[derive(Debug)]
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub(crate) fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("embedded template {name} does not parse: {e}"));
        }
        Self { env }
    }

    pub(crate) fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_stay_small() {
        let total: usize = super::ASSETS.iter().map(|(_, _, body)| body.len()).sum();
        assert!(total < 50 * 1024, "CSS and JS together are {total} bytes");
    }
}
