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

/// HTTPS beside HTTP: the port it is served on (127.0.0.1 only, as HTTP) and with which
/// certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    pub port: u16,
    /// PEM files: the certificate chain, the server's certificate first, and its private key.
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The production profile's gateway: plain HTTP redirected to HTTPS, HSTS on every answer.
    pub production: bool,
}

/// The directory of what a deployment adds to the gateway's server (`GATEWAY_INCLUDE`).
const INCLUDE_DIRECTORY: &str = "gateway.d";

/// Renders gateway.conf.template and nginx-local.conf.template into `prefix` (as gateway.conf and
/// nginx.conf), the gateway listening on 127.0.0.1:`port` (loopback only: nobody outside this
/// machine reaches it), with `tls` its HTTPS (tls.conf.template, and production.conf.template for
/// the production profile, into gateway.d/), and makes nginx's temporary directories there.
pub fn render_configuration(upstreams: &Upstreams, prefix: &Path, port: u16, tls: Option<&Tls>) -> anyhow::Result<()> {
    for temporary in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join("temp").join(temporary))?;
    }
    let included = prefix.join(INCLUDE_DIRECTORY);
    // What an earlier start in this prefix added goes: this start says again what it wants.
    let _ = std::fs::remove_dir_all(&included);
    std::fs::create_dir_all(&included)?;
    let mut outputs =
        vec![("gateway.conf.template", prefix.join("gateway.conf")), ("nginx-local.conf.template", prefix.join("nginx.conf"))];
    if let Some(tls) = tls {
        outputs.push(("tls.conf.template", included.join("tls.conf")));
        if tls.production {
            outputs.push(("production.conf.template", included.join("production.conf")));
        }
    }
    let templates = templates_directory();
    for (template, output) in outputs {
        let path = templates.join(template);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        std::fs::write(output, render(&text, upstreams, prefix, port, tls)?)?;
    }
    Ok(())
}

/// One template's text, rendered.
pub fn render(template: &str, upstreams: &Upstreams, prefix: &Path, port: u16, tls: Option<&Tls>) -> anyhow::Result<String> {
    let prefix_text = prefix.to_str().context("the prefix path is not UTF-8")?;
    let listen = format!("127.0.0.1:{port}");
    let access_log = format!("{prefix_text}/access.log");
    let include = format!("{prefix_text}/{INCLUDE_DIRECTORY}");
    let path_text = |path: &Path| path.to_str().map(str::to_owned).context("a certificate path is not UTF-8");
    let tls_values = match tls {
        Some(tls) => {
            Some((format!("127.0.0.1:{}", tls.port), tls.port.to_string(), path_text(&tls.certificate)?, path_text(&tls.key)?))
        }
        None => None,
    };
    let mut variables = vec![
        ("PREFIX", prefix_text),
        ("GATEWAY_LISTEN", listen.as_str()),
        ("ACCESS_LOG", access_log.as_str()),
        ("GATEWAY_INCLUDE", include.as_str()),
    ];
    if let Some((listen, port, certificate, key)) = &tls_values {
        variables.extend([
            ("GATEWAY_TLS_LISTEN", listen.as_str()),
            ("GATEWAY_TLS_PORT", port.as_str()),
            ("GATEWAY_TLS_CERTIFICATE", certificate.as_str()),
            ("GATEWAY_TLS_KEY", key.as_str()),
        ]);
    }
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
        let text = render(template, &upstreams(&["127.0.0.1:1", "127.0.0.1:2"]), Path::new("/p"), 8080, None).unwrap();
        assert_eq!(
            text,
            "upstream user_service { server 127.0.0.1:1 fail_timeout=2s; server 127.0.0.1:2 fail_timeout=2s; keepalive 16; }\nlisten 127.0.0.1:8080;"
        );
    }

    #[test]
    fn the_repositorys_templates_render_without_a_placeholder_left() {
        let prefix = Path::new("/tmp/gateway-prefix");
        let tls = Tls { port: 443, certificate: "/c.pem".into(), key: "/k.pem".into(), production: true };
        for template in ["gateway.conf.template", "nginx-local.conf.template", "tls.conf.template", "production.conf.template"] {
            let text = std::fs::read_to_string(templates_directory().join(template)).unwrap();
            let rendered = render(&text, &upstreams(&["127.0.0.1:8003"]), prefix, 80, Some(&tls)).unwrap();
            // Comments may name the placeholder syntax; configuration lines may not keep one.
            let left: Vec<&str> =
                rendered.lines().filter(|line| !line.trim_start().starts_with('#') && line.contains("${")).collect();
            assert!(left.is_empty(), "{template}: {left:?}");
        }
    }

    #[test]
    fn a_service_without_a_server_is_refused() {
        let template = "upstream user_service { server ${USER_SERVICE} fail_timeout=2s; }";
        assert!(render(template, &upstreams(&[]), Path::new("/p"), 80, None).is_err());
    }
}
