//! Network namespaces made by a test (`ip netns add`), so test traffic only ever uses addresses
//! inside namespaces the test created: loopback inside one, or a tap device into a VM.

use anyhow::{bail, ensure, Context, Result};
use std::process::Command;

/// A network namespace made for one test (loopback up), deleted when dropped. A tap device
/// made in it ([`Netns::add_tap`]) goes with it.
#[derive(Debug)]
pub struct Netns(String);

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Netns {
    /// Creates `seamless-TAG-PID` (replacing a leftover of that name) with loopback up.
    pub fn new(tag: &str) -> Result<Netns> {
        let ns = Netns(format!("seamless-{tag}-{}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "delete", &ns.0]).output();
        ip(&["netns", "add", &ns.0])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name (`/run/netns/NAME`).
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The namespace file, for `nsenter --net=` and `setns`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Creates a persistent tap device `dev` inside the namespace with address `cidr` (e.g.
    /// `10.77.0.1/24`), link up; the carrier comes when a program (QEMU) attaches to it.
    pub fn add_tap(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["tuntap", "add", "dev", dev, "mode", "tap"]).context("creating the tap device")?;
        self.ip(&["addr", "add", cidr, "dev", dev])?;
        self.ip(&["link", "set", dev, "up"])
    }

    /// Runs a command inside the namespace (`nsenter --net`) and returns its stdout.
    pub fn output(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .arg(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.0))?;
        ensure!(
            out.status.success(),
            "{program} {} in {}: {}",
            args.join(" "),
            self.0,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The `Tcp:` counters of `/proc/net/snmp` as the namespace sees them (`EstabResets`,
    /// `OutRsts`, `RetransSegs`, `CurrEstab`, ...).
    pub fn tcp_counters(&self) -> Result<Vec<(String, i64)>> {
        let snmp = self.output("cat", &["/proc/net/snmp"])?;
        let rows: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
        ensure!(rows.len() == 2, "no Tcp: rows in /proc/net/snmp of {}", self.0);
        let names = rows[0].split_whitespace().skip(1);
        let values = rows[1].split_whitespace().skip(1);
        Ok(names.zip(values).filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?))).collect())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

/// The value of counter `name` in `counters` (from [`Netns::tcp_counters`]).
pub fn counter(counters: &[(String, i64)], name: &str) -> Result<i64> {
    counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v).with_context(|| format!("no TCP counter {name}"))
}
