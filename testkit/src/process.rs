//! Running commands and one-off HTTP exchanges.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Runs a command, returning (status, stdout, stderr).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let input = stdin.map(<[u8]>::to_vec);
    let mut sin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        if let Some(i) = input {
            use std::io::Write;
            let _ = sin.write_all(&i);
        }
    });
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = se.read_to_string(&mut e);
        e
    });
    let _ = so.read_to_string(&mut out);
    err.push_str(&reader.join().unwrap_or_default());
    let _ = writer.join();
    let status = child.wait().expect("wait");
    (status, out, err)
}

/// One HTTP/1.1 exchange of raw bytes: (status, head, body).
pub fn http(addr: &str, request: &[u8]) -> (u16, String, String) {
    try_http(addr, request).unwrap_or_else(|e| panic!("HTTP to {addr}: {e}"))
}

/// [`http`], with an error instead of a panic when nothing answers.
pub fn try_http(addr: &str, request: &[u8]) -> Result<(u16, String, String), String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {out:?}"))?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((status, head.to_string(), body.to_string()))
}
