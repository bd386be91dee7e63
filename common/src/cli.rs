//! Uniform command-line failure: one line naming the problem, exit status 2.

use std::fmt::Display;

/// Exit status for bad flags or configuration (as clap and most Unix tools).
pub const EXIT_USAGE: i32 = 2;

/// Prints `<program>: <problem>` as one line on stderr and exits with status 2.
pub fn usage_error(program: &str, problem: impl Display) -> ! {
    let text = problem.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid usage");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    eprintln!("{program}: {line}");
    std::process::exit(EXIT_USAGE)
}

/// `--listen HOST:PORT`, resolved.
pub fn listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("listen: cannot resolve '{text}': {e}"))?
        .next()
        .ok_or_else(|| format!("listen: '{text}' resolves to no address"))
}

/// `--rm HOST:PORT,...`: at least one, each HOST:PORT.
pub fn rm_list(items: Vec<String>) -> Result<Vec<String>, String> {
    let rms: Vec<String> = items.into_iter().filter(|r| !r.trim().is_empty()).collect();
    if rms.is_empty() {
        return Err("rm: at least one resource manager is required".into());
    }
    for rm in &rms {
        match rm.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("rm: '{rm}' is not HOST:PORT")),
        }
    }
    Ok(rms)
}

/// `ID=HOST:PORT,...` (raft-rm's `--peers`, the drills' `--rms`): at
/// least one, each id once.
pub fn peer_map(text: &str) -> Result<std::collections::BTreeMap<crate::NodeId, String>, String> {
    let mut peers = std::collections::BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("'{item}' is not ID=HOST:PORT"))?;
        let id: crate::NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("'{id}' in '{item}' is not a node id"))?;
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("'{addr}' is not HOST:PORT")),
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

/// `--shared-secret-file`: loaded if given; required off loopback.
pub fn internal_secret(
    path: Option<&std::path::Path>,
    listen: std::net::SocketAddr,
) -> Result<Option<crate::auth::SharedSecret>, String> {
    let secret = match path {
        Some(p) => Some(
            crate::auth::SharedSecret::from_file(p)
                .map_err(|e| format!("shared-secret-file: {e}"))?,
        ),
        None => None,
    };
    if secret.is_none() && !listen.ip().is_loopback() {
        return Err(format!(
            "shared-secret-file: required when listening on a non-loopback address ({listen})"
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_flag_checks() {
        assert!(listen_addr("127.0.0.1:0").is_ok());
        assert!(listen_addr("nope")
            .unwrap_err()
            .starts_with("listen: cannot resolve"));
        assert_eq!(
            rm_list(vec!["a:1".into(), " ".into()]),
            Ok(vec!["a:1".to_string()])
        );
        assert_eq!(
            rm_list(vec![]),
            Err("rm: at least one resource manager is required".into())
        );
        assert_eq!(
            rm_list(vec!["a".into()]),
            Err("rm: 'a' is not HOST:PORT".into())
        );
        assert_eq!(peer_map("1=a:1, 2=b:2").map(|m| m.len()), Ok(2));
        assert_eq!(
            peer_map("1=a:1,1=b:2"),
            Err("node 1 is listed twice".into())
        );
        assert_eq!(
            peer_map("x=a:1"),
            Err("'x' in 'x=a:1' is not a node id".into())
        );
        assert_eq!(peer_map("1=a"), Err("'a' is not HOST:PORT".into()));
        assert_eq!(peer_map(""), Err("no peers given".into()));
        let lo = listen_addr("127.0.0.1:0").unwrap();
        let any = listen_addr("0.0.0.0:0").unwrap();
        assert_eq!(internal_secret(None, lo).map(|s| s.is_none()), Ok(true));
        assert!(internal_secret(None, any)
            .unwrap_err()
            .contains("required when listening"));
    }
}
