//! The one renderer of the repository's nginx templates (services/gateway/) into a private
//! prefix directory, for every nginx started outside docker-compose: the harness's (a gateway per
//! scenario, several replicas per service) and `cargo xtask up`'s (one process per service on the
//! guide's ports). docker-compose's nginx renders the same templates with envsubst.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where the templates are.
pub fn templates_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/gateway")
}

/// Where each service's replicas listen, as `host:port`: nginx balances over them.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    pub user: Vec<String>,
    pub product: Vec<String>,
    pub order: Vec<String>,
    pub inventory: Vec<String>,
}

/// Renders gateway.conf.template and nginx-local.conf.template into `prefix` (as gateway.conf and
/// nginx.conf), the gateway listening on 127.0.0.1:`port` (loopback only: nobody outside this
/// machine reaches it), and makes nginx's temporary directories there.
pub fn render_configuration(upstreams: &Upstreams, prefix: &Path, port: u16) -> anyhow::Result<()> {
    for temporary in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join("temp").join(temporary))?;
    }
    let templates = templates_directory();
    for (template, output) in [("gateway.conf.template", "gateway.conf"), ("nginx-local.conf.template", "nginx.conf")] {
        let path = templates.join(template);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        std::fs::write(prefix.join(output), render(&text, upstreams, prefix, port)?)?;
    }
    Ok(())
}

/// One template's text, rendered.
pub fn render(template: &str, upstreams: &Upstreams, prefix: &Path, port: u16) -> anyhow::Result<String> {
    let prefix_text = prefix.to_str().context("the prefix path is not UTF-8")?;
    let listen = format!("127.0.0.1:{port}");
    let access_log = format!("{prefix_text}/access.log");
    let variables = [("PREFIX", prefix_text), ("GATEWAY_LISTEN", listen.as_str()), ("ACCESS_LOG", access_log.as_str())];
    let services = [
        ("USER_SERVICE", &upstreams.user),
        ("PRODUCT_SERVICE", &upstreams.product),
        ("ORDER_SERVICE", &upstreams.order),
        ("INVENTORY_SERVICE", &upstreams.inventory),
    ];
    let mut text = template.to_owned();
    // The template names one server per upstream (as compose has one container per service);
    // replicas become one `server` line each, with the template's parameters.
    for (name, servers) in services {
        let placeholder = format!("server ${{{name}}}");
        let Some(start) = text.find(&placeholder) else { continue };
        anyhow::ensure!(!servers.is_empty(), "no server for {name}");
        let end = start + text[start..].find(';').context("a server line without `;`")?;
        let parameters = text[start + placeholder.len()..end].to_owned();
        let servers: Vec<String> = servers.iter().map(|server| format!("server {server}{parameters};")).collect();
        text.replace_range(start..=end, &servers.join(" "));
    }
    for (name, value) in variables {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(user: &[&str]) -> Upstreams {
        let one = |address: &str| vec![address.to_owned()];
        Upstreams {
            user: user.iter().map(|address| (*address).to_owned()).collect(),
            product: one("127.0.0.1:8000"),
            order: one("127.0.0.1:8001"),
            inventory: one("127.0.0.1:8002"),
        }
    }

    #[test]
    fn replicas_become_one_server_line_each_with_the_templates_parameters() {
        let template =
            "upstream user_service { server ${USER_SERVICE} fail_timeout=2s; keepalive 16; }\nlisten ${GATEWAY_LISTEN};";
        let text = render(template, &upstreams(&["127.0.0.1:1", "127.0.0.1:2"]), Path::new("/p"), 8080).unwrap();
        assert_eq!(
            text,
            "upstream user_service { server 127.0.0.1:1 fail_timeout=2s; server 127.0.0.1:2 fail_timeout=2s; keepalive 16; }\nlisten 127.0.0.1:8080;"
        );
    }

    #[test]
    fn the_repositorys_templates_render_without_a_placeholder_left() {
        let prefix = Path::new("/tmp/gateway-prefix");
        for template in ["gateway.conf.template", "nginx-local.conf.template"] {
            let text = std::fs::read_to_string(templates_directory().join(template)).unwrap();
            let rendered = render(&text, &upstreams(&["127.0.0.1:8003"]), prefix, 80).unwrap();
            // Comments may name the placeholder syntax; configuration lines may not keep one.
            let left: Vec<&str> =
                rendered.lines().filter(|line| !line.trim_start().starts_with('#') && line.contains("${")).collect();
            assert!(left.is_empty(), "{template}: {left:?}");
        }
    }

    #[test]
    fn a_service_without_a_server_is_refused() {
        let template = "upstream user_service { server ${USER_SERVICE} fail_timeout=2s; }";
        assert!(render(template, &upstreams(&[]), Path::new("/p"), 80).is_err());
    }
}
