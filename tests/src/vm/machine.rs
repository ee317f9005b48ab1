//! A running guest: the QEMU process, its console (ttyS0, captured with host timestamps) and
//! its control channel (ttyS1, a unix socket), stage timings, and the kexec helper.

use super::guest::GuestBuilder;
use super::kernels::Which;
use super::stream::{Line, Stream};
use super::{env, host::cache_dir};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The deadlines are for a machine whose two cores are shared with other work (CI "possibly
// busy"): under TCG with a load average of 11, a systemd guest took 97 s from `kexec --exec`
// to `/init` and 291 s more to its control shell.
/// Deadline for a cold boot to reach `/init`.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline for the control loop after `/init`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// Default deadline of a guest command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence of a command that ends in a jump, before the jump ([`Vm::jump`]).
pub const JUMP_STALL: Duration = Duration::from_secs(300);
/// Longest time of such a command in all while it keeps reporting progress.
pub const JUMP_CAP: Duration = Duration::from_secs(900);
/// Deadline from `kexec --exec` to the new kernel's `/init`.
pub const KEXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// Marker logged by seamless-init when it starts.
pub const INIT_STARTED: &str = "seamless-init: started on kernel";
/// Marker logged by seamless-init right before it executes the real init.
pub const INIT_HANDOVER: &str = "seamless-init: handing over to";
const JUMP_LINE: &str = "jumping into the loaded kernel";
/// What the old kernel prints on its console as it jumps.
const KEXEC_CONSOLE_LINE: &str = "Starting new kernel";

/// Where a guest's console and control streams stood (see [`Vm::jump_mark`]).
#[derive(Debug, Clone, Copy)]
pub struct JumpMark {
    console: usize,
    ctl: usize,
}

/// The outcome of a guest command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Exit status.
    pub status: i32,
    /// Standard output and error, interleaved.
    pub output: String,
}

/// What a kexec did and how long it took.
#[derive(Debug, Clone)]
pub struct KexecReport {
    /// The release now running.
    pub release: String,
    /// From the "jumping" line of `seamless kexec --exec` to the new kernel's `/init`.
    pub jump_to_init: Duration,
    /// seamless-init's own time on the new kernel, as it logged it.
    pub init_ms: u64,
    /// First console line of the new kernel's boot (for [`Vm::console_since`]).
    pub console_from: usize,
}

/// A running guest. Dropping it kills QEMU and prints the stage timings.
pub struct Vm {
    name: String,
    child: Child,
    console: Stream,
    ctl: Stream,
    qemu_err: Stream,
    ctl_writer: UnixStream,
    epoch: Instant,
    work: PathBuf,
    ports: Vec<(u16, u16)>,
    current: Which,
    release: String,
    next_id: u64,
    stages: Vec<(String, Duration)>,
    /// The namespace QEMU runs in with [`GuestBuilder::tap_peer`]; dropped (deleted) after QEMU
    /// is killed.
    netns: Option<crate::netns::Netns>,
    /// QEMU's program and arguments, for [`Vm::reboot_into`].
    qemu: (std::ffi::OsString, Vec<std::ffi::OsString>),
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("name", &self.name).field("release", &self.release).finish_non_exhaustive()
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The number after `after` in `text` (e.g. "after 123 ms").
fn number_after(text: &str, after: &str) -> Option<u64> {
    let rest = &text[text.find(after)? + after.len()..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl Vm {
    pub(crate) fn start(b: GuestBuilder) -> Result<Vm> {
        let env = env()?;
        let work = cache_dir().join("runs").join(format!("{}-{}", b.name, std::process::id()));
        std::fs::create_dir_all(&work)?;
        let t = Instant::now();
        let disk = b.make_disk(&work)?;
        let disk_time = t.elapsed();
        let mut ports = Vec::new();
        for g in &b.forwards {
            ports.push((*g, free_port()?));
        }
        let sock = work.join("ctl.sock");
        let _ = std::fs::remove_file(&sock);
        let kernel = env.kernel(b.boot);
        let netns = if b.tap_peer {
            let ns = crate::netns::Netns::new(&format!("vm-{}", b.name))?;
            ns.add_tap("tap0", &format!("{}/24", super::guest::TAP_HOST_ADDR))?;
            Some(ns)
        } else {
            None
        };
        // With a tap peer QEMU must open /dev/net/tun inside the namespace that holds tap0:
        // nsenter executes it in place (the child's pid is QEMU's).
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path())).arg("qemu-system-x86_64");
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        // One host thread for all vCPUs under TCG: with multi-threaded TCG, a vCPU can still
        // run a stale translation of kernel code another vCPU just patched, which shows up as an
        // "Oops: int3" in the kernel's own text patching during early boot (seen after a kexec).
        let accel = if env.accel == "tcg" { "tcg,thread=single".to_string() } else { env.accel.clone() };
        cmd.args(["-accel", &accel]);
        // Under TCG, "max" emulates XSAVE and AVX, so FPU/AVX state really crosses the jump.
        cmd.args(["-cpu", if env.accel == "kvm" { "host" } else { "max" }]);
        cmd.args(["-m", &b.memory, "-smp", &b.smp.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
            .args(["-serial", "stdio", "-chardev"])
            .arg(format!("socket,id=ctl,path={},server=on,wait=off", sock.display()))
            .args(["-serial", "chardev:ctl", "-kernel"])
            .arg(kernel.vmlinuz())
            .arg("-initrd")
            .arg(env.initrd(b.boot))
            .args(["-append", &b.cmdline, "-drive"])
            .arg(format!("file={},format=raw,if=virtio,cache=writeback", disk.display()));
        if b.extra_disk_mib > 0 {
            let extra = work.join("data.img");
            std::fs::File::create(&extra)
                .and_then(|f| f.set_len(b.extra_disk_mib << 20))
                .with_context(|| format!("creating {}", extra.display()))?;
            cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio,cache=writeback", extra.display()));
        }
        let mut netdev = String::from("user,id=n0");
        for (g, h) in &ports {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
        }
        cmd.args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"]);
        if netns.is_some() {
            cmd.args(["-netdev", "tap,id=n1,ifname=tap0,script=no,downscript=no", "-device"])
                .arg(format!("virtio-net-pci,netdev=n1,mac={}", super::guest::TAP_GUEST_MAC));
        }
        let qemu = (cmd.get_program().to_owned(), cmd.get_args().map(|a| a.to_owned()).collect::<Vec<_>>());
        let epoch = Instant::now();
        let (child, console, ctl, qemu_err, ctl_writer) = spawn_qemu(&qemu, epoch, &work, "")?;
        let mut vm = Vm {
            name: b.name.clone(),
            child,
            console,
            ctl,
            qemu_err,
            ctl_writer,
            epoch,
            work,
            ports,
            current: b.boot,
            release: kernel.release.clone(),
            next_id: 1,
            stages: vec![("build root disk".into(), disk_time)],
            netns,
            qemu,
        };
        eprintln!(
            "vm {}: cold boot of {} ({}), accel {}, kernels {}",
            vm.name,
            kernel.release,
            b.boot.label(),
            env.accel,
            env.describe()
        );
        let started = vm.wait_console(0, INIT_STARTED, BOOT_TIMEOUT).map_err(|e| vm.fail("cold boot to /init", e))?;
        vm.stages.push(("cold boot to /init".into(), started.at));
        let handover = vm.wait_console(0, INIT_HANDOVER, BOOT_TIMEOUT).map_err(|e| vm.fail("seamless-init", e))?;
        let own = number_after(&handover.text, "after").unwrap_or(0);
        vm.stages.push((format!("seamless-init on {}", vm.release), Duration::from_millis(own)));
        let ready = vm.wait_ready(0).map_err(|e| vm.fail("boot to control shell", e))?;
        vm.stages.push(("cold boot to control shell".into(), ready.1));
        if ready.0 != vm.release {
            return Err(vm.fail("boot", format!("guest runs {}, expected {}", ready.0, vm.release)));
        }
        Ok(vm)
    }

    /// A normal reboot into kernel `to`: `systemctl reboot` in the guest (systemd stops every
    /// unit and the guest resets; QEMU runs with `-no-reboot`, so it exits), then QEMU starts
    /// again on the same disk (and tap device) with `to`'s image and, as a boot loader would
    /// pick them, the guest's own `/boot/initrd.img-RELEASE` (read from the disk with
    /// `debugfs`) when `guest_initrd`, else the harness's initramfs. Returns once the control
    /// loop answers on `to`; the console and control streams start anew (marks taken before
    /// do not apply).
    pub fn reboot_into(&mut self, to: Which, guest_initrd: bool) -> Result<Duration> {
        self.reboot_answering(to, guest_initrd, None)
    }

    /// [`Vm::reboot_into`], answering one console prompt of the new boot: when `answer` is
    /// `Some((prompt, text))`, waits for `prompt` on the console and types `text` (a
    /// passphrase and a newline).
    pub fn reboot_answering(
        &mut self,
        to: Which,
        guest_initrd: bool,
        answer: Option<(&str, &str)>,
    ) -> Result<Duration> {
        let env = env()?;
        let t0 = Instant::now();
        // The control loop dies with the shutdown: the command never ends by itself.
        self.send("systemctl reboot; sleep 600")?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.fail("reboot", "QEMU did not exit after systemctl reboot"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stages.push((format!("shutdown of {}", self.release), t0.elapsed()));
        let k = env.kernel(to).clone();
        let initrd = if guest_initrd {
            let out = self.work.join(format!("initrd.img-{}", k.release));
            let disk = self.work.join("root.img");
            let _ = std::fs::remove_file(&out);
            super::host::run(
                Command::new("debugfs")
                    .arg("-R")
                    .arg(format!("dump -p /boot/initrd.img-{} {}", k.release, out.display()))
                    .arg(&disk),
            )
            .context("reading the guest's initramfs with debugfs")?;
            anyhow::ensure!(out.exists(), "debugfs left no {}", out.display());
            out
        } else {
            env.initrd(to).clone()
        };
        let args = &mut self.qemu.1;
        for (flag, value) in [("-kernel", k.vmlinuz()), ("-initrd", initrd)] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = value.into_os_string();
            }
        }
        let _ = std::fs::remove_file(self.work.join("ctl.sock"));
        let (child, console, ctl, qemu_err, ctl_writer) = spawn_qemu(&self.qemu, self.epoch, &self.work, "-reboot")?;
        self.child = child;
        self.console = console;
        self.ctl = ctl;
        self.qemu_err = qemu_err;
        self.ctl_writer = ctl_writer;
        let booted = Instant::now();
        if let Some((prompt, text)) = answer {
            let seen = self
                .wait_console_prompt(0, prompt, Duration::from_secs(600))
                .map_err(|e| self.fail("reboot to the prompt", e))?;
            self.stages.push((format!("boot of {} to the prompt {seen:?}", k.release), booted.elapsed()));
            self.type_console(text)?;
        }
        // The distribution's initramfs runs seamless-init only as a quiet hook: wait for the
        // control loop alone.
        let (release, _) =
            self.wait_ready_within(0, Duration::from_secs(600)).map_err(|e| self.fail("reboot to control shell", e))?;
        if release != k.release {
            return Err(self.fail("reboot", format!("guest runs {release}, expected {}", k.release)));
        }
        self.release = release;
        self.current = to;
        self.stages.push((format!("boot of {} to control shell", k.release), booted.elapsed()));
        Ok(t0.elapsed())
    }

    /// Waits for the control loop's `@@READY` after byte `from` of the control stream;
    /// returns the release it reports and when it arrived.
    fn wait_ready(&self, from: usize) -> Result<(String, Duration)> {
        self.wait_ready_within(from, READY_TIMEOUT)
    }

    /// [`Vm::wait_ready`] with another deadline.
    fn wait_ready_within(&self, from: usize, timeout: Duration) -> Result<(String, Duration)> {
        let epoch = self.epoch;
        let line = self
            .ctl
            .wait(timeout, |d| {
                let at = d.text.get(from..)?.find("@@READY ")? + from;
                let rest = &d.text[at + 8..];
                let end = rest.find('\n')?;
                Some((rest[..end].to_string(), epoch.elapsed()))
            })
            .map_err(|e| anyhow!("control loop not ready: {e}"))?;
        Ok((line.0.split(' ').next().unwrap_or_default().to_string(), line.1))
    }

    /// Builds an error naming the failed stage, with the last 50 console lines.
    pub fn fail(&self, stage: &str, err: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "VM {} ({}): stage `{stage}` failed after {:.1} s: {err}\n--- last 50 console lines (ttyS0) ---\n{}\n--- last 10 control lines (ttyS1) ---\n{}\n--- qemu stderr ---\n{}",
            self.name,
            self.release,
            self.epoch.elapsed().as_secs_f64(),
            self.console.tail(50),
            self.ctl.tail(10),
            self.qemu_err.tail(10)
        )
    }

    /// The release running now.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The kernel family running now.
    pub fn current(&self) -> Which {
        self.current
    }

    /// The host port forwarded to `guest_port`.
    pub fn host_port(&self, guest_port: u16) -> Option<u16> {
        self.ports.iter().find(|(g, _)| *g == guest_port).map(|(_, h)| *h)
    }

    /// The network namespace of a [`GuestBuilder::tap_peer`] guest: the host side of its tap
    /// NIC, where test clients are made (`seamless_tests::stream::in_netns`).
    pub fn peer_netns(&self) -> Option<&crate::netns::Netns> {
        self.netns.as_ref()
    }

    /// The work directory (console and control logs).
    pub fn work_dir(&self) -> &PathBuf {
        &self.work
    }

    fn send(&mut self, script: &str) -> Result<(u64, usize)> {
        let id = self.next_id;
        self.next_id += 1;
        let mark = self.ctl.with(|d| d.text.len());
        self.ctl_writer
            .write_all(format!("{id} {}\n", base64(script.as_bytes())).as_bytes())
            .context("writing to the control socket")?;
        Ok((id, mark))
    }

    /// Sends a shell command to the guest without waiting for it (one that should end in a
    /// jump whose new boot a test follows on the console itself, e.g. up to a prompt).
    pub fn start_command(&mut self, script: &str) -> Result<()> {
        self.send(script).map(|_| ())
    }

    /// Runs a shell command in the guest (stdin is /dev/null) and returns its status and output.
    pub fn run_timeout(&mut self, script: &str, timeout: Duration) -> Result<CmdOutput> {
        let (id, mark) = self.send(script)?;
        let end = format!("\n@@END:{id}:");
        let r = self.ctl.wait(timeout, |d| {
            let text = d.text.get(mark..)?;
            if let Some(p) = text.find(&end) {
                let rest = &text[p + end.len()..];
                let nl = rest.find('\n')?;
                let status = rest[..nl].trim().parse().unwrap_or(-1);
                return Some(Ok(CmdOutput { status, output: text[..p].to_string() }));
            }
            text.contains("@@READY ")
                .then(|| Err(anyhow!("the guest's control loop restarted while running the command")))
        });
        match r {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.fail(&format!("command `{script}`"), e)),
            Err(e) => Err(self.fail(&format!("command `{script}`"), e)),
        }
    }

    /// [`Vm::run_timeout`] with the default deadline.
    pub fn run(&mut self, script: &str) -> Result<CmdOutput> {
        self.run_timeout(script, CMD_TIMEOUT)
    }

    /// Runs a command that must succeed; returns its output.
    pub fn sh(&mut self, script: &str) -> Result<String> {
        let out = self.run(script)?;
        if out.status != 0 {
            return Err(
                self.fail(&format!("command `{script}`"), format!("exit status {}: {}", out.status, out.output))
            );
        }
        Ok(out.output)
    }

    /// Number of console lines so far: pass it to [`Vm::wait_console`] / [`Vm::console_since`]
    /// to look only at what comes next.
    pub fn console_mark(&self) -> usize {
        self.console.with(|d| d.lines.len())
    }

    /// Waits for a console line containing `needle`, among lines from index `from` on.
    pub fn wait_console(&self, from: usize, needle: &str, timeout: Duration) -> Result<Line> {
        self.console
            .wait(timeout, |d| d.lines.iter().skip(from).find(|l| l.text.contains(needle)).cloned())
            .map_err(|e| anyhow!("no console line with {needle:?}: {e}"))
    }

    /// Waits for `needle` in a console line from index `from` on, or in the line being written
    /// (a prompt that waits for input ends in no newline); returns that line's text.
    pub fn wait_console_prompt(&self, from: usize, needle: &str, timeout: Duration) -> Result<String> {
        self.console
            .wait(timeout, |d| {
                d.lines
                    .iter()
                    .skip(from)
                    .find(|l| l.text.contains(needle))
                    .map(|l| l.text.clone())
                    .or_else(|| d.partial.contains(needle).then(|| d.partial.clone()))
            })
            .map_err(|e| anyhow!("no console text {needle:?}: {e}"))
    }

    /// Types `text` on the serial console (QEMU's stdin, ttyS0's input).
    pub fn type_console(&mut self, text: &str) -> Result<()> {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().context("QEMU's console input is not open")?;
        stdin.write_all(text.as_bytes()).context("typing on the console")?;
        stdin.flush().context("typing on the console")
    }

    /// Console lines from index `from` on.
    pub fn console_since(&self, from: usize) -> Vec<Line> {
        self.console.with(|d| d.lines.iter().skip(from).cloned().collect())
    }

    /// Records a stage duration for the report.
    pub fn record_stage(&mut self, name: &str, d: Duration) {
        self.stages.push((name.to_string(), d));
    }

    /// Loads kernel `to` from the guest's /boot with `seamless kexec`, jumps with
    /// `seamless kexec --exec`, and waits for the new kernel's seamless-init and control loop.
    pub fn kexec(&mut self, to: Which) -> Result<KexecReport> {
        let r = env()?.kernel(to).release.clone();
        self.kexec_with_initrd(to, &format!("/boot/initrd.img-{r}"))
    }

    /// [`Vm::kexec`] with another initramfs (a guest path), e.g. one with a region appended.
    pub fn kexec_with_initrd(&mut self, to: Which, initrd: &str) -> Result<KexecReport> {
        let k = env()?.kernel(to).clone();
        self.sh(&format!("seamless kexec --kernel /boot/vmlinuz-{} --initrd {initrd} --reuse-cmdline", k.release))?;
        self.jump(to, "seamless kexec --exec")
    }

    /// A plain kexec into kernel `to` with `initrd` (a guest path) that must boot without
    /// seamless-init (an initramfs without the seamless hook): returns once the new kernel's
    /// control shell answers, and fails if seamless-init ran.
    pub fn kexec_without_seamless(&mut self, to: Which, initrd: &str) -> Result<()> {
        let k = env()?.kernel(to).clone();
        self.sh(&format!("seamless kexec --kernel /boot/vmlinuz-{} --initrd {initrd} --reuse-cmdline", k.release))?;
        let console_from = self.console_mark();
        let sent = self.epoch.elapsed();
        let (_, mark) = self.send("seamless kexec --exec")?;
        let stage = format!("plain kexec {} -> {}", self.release, k.release);
        let (release, ready_at) = self.wait_ready(mark).map_err(|e| self.fail(&stage, e))?;
        if release != k.release {
            return Err(self.fail(&stage, format!("guest runs {release} after the kexec, expected {}", k.release)));
        }
        if let Some(l) = self.console_since(console_from).into_iter().find(|l| l.text.contains("seamless-init")) {
            return Err(self.fail(&stage, format!("seamless-init ran from an image without the hook: {}", l.text)));
        }
        self.release = release.clone();
        self.current = to;
        self.stages.push((format!("plain kexec to control shell of {release}"), ready_at.saturating_sub(sent)));
        Ok(())
    }

    /// `seamless upgrade` to kernel `to` with its stock initramfs and the current command line;
    /// `targets` are the selection arguments (`--pid P ...`). Returns once the new kernel's
    /// control shell answers.
    pub fn upgrade(&mut self, to: Which, targets: &str) -> Result<KexecReport> {
        let r = env()?.kernel(to).release.clone();
        self.jump(
            to,
            &format!(
                "seamless upgrade --kernel /boot/vmlinuz-{r} --initrd /boot/initrd.img-{r} --reuse-cmdline {targets}"
            ),
        )
    }

    /// Runs `command`, which must end in a jump into kernel `to`, and follows the new boot.
    pub fn jump(&mut self, to: Which, command: &str) -> Result<KexecReport> {
        let console_from = self.console_mark();
        let (id, mark) = self.send(command)?;
        let end = format!("\n@@END:{id}:");
        // `seamless upgrade` says when its checks passed and when the kernel is loaded: on a
        // busy machine those stages alone took 96 s and 50 s in a Debian guest, so the deadline
        // is for a stall (no new output), with a cap.
        let jumped = self.ctl.wait_progressing(JUMP_STALL, JUMP_CAP, |d| {
            let text = d.text.get(mark..)?;
            if text.contains(JUMP_LINE) {
                return Some(Ok(d.lines.iter().rev().find(|l| l.text.contains(JUMP_LINE)).map(|l| l.at)));
            }
            // The old kernel can die with its last lines still in the UART (under load): the new
            // kernel's control loop answering is proof enough that the jump happened. Its line
            // then starts with the old kernel's cut-off last line, so its time is about the jump's.
            if text.contains("@@READY ") {
                return Some(Ok(d.lines.iter().rev().find(|l| l.text.contains("@@READY ")).map(|l| l.at)));
            }
            text.contains(&end).then(|| Err(text.to_string()))
        });
        let jump_at = match jumped {
            Ok(Ok(Some(at))) => at,
            Ok(Ok(None)) => self.epoch.elapsed(),
            Ok(Err(out)) => return Err(self.fail(command, format!("the jump did not happen: {out}"))),
            Err(e) => return Err(self.fail(command, e)),
        };
        self.follow(to, JumpMark { console: console_from, ctl: mark }, jump_at, "kexec --exec")
    }

    /// Runs `command`, which must bring the guest to kernel `to` in a way whose new boot has no
    /// seamless-init lines to follow (a plain `systemctl kexec` into an initramfs whose hook
    /// finds no image and stays quiet): waits only for the new control loop, for up to 10
    /// minutes. Returns the time from sending the command.
    pub fn jump_to_ready(&mut self, to: Which, command: &str) -> Result<Duration> {
        let k = env()?.kernel(to).release.clone();
        let t0 = Instant::now();
        let (_, mark) = self.send(command)?;
        let (release, _) = self.wait_ready_within(mark, Duration::from_secs(600)).map_err(|e| self.fail(command, e))?;
        if release != k {
            return Err(self.fail(command, format!("guest runs {release}, expected {k}")));
        }
        self.release = release;
        self.current = to;
        self.stages.push((format!("`{command}` to control shell of {k}"), t0.elapsed()));
        Ok(t0.elapsed())
    }

    /// Where the console and control streams stand now: take it before something outside the
    /// harness makes the guest jump, and pass it to [`Vm::follow_jump`].
    pub fn jump_mark(&self) -> JumpMark {
        JumpMark { console: self.console_mark(), ctl: self.ctl.with(|d| d.text.len()) }
    }

    /// Follows a jump into kernel `to` that something outside the harness started after
    /// `mark` (Ansible over SSH, kured's reboot command): waits for the new kernel's
    /// seamless-init on the console and for the control loop's `@@READY`, checks the release
    /// and records the stages (from the old kernel's "Starting new kernel" console line).
    pub fn follow_jump(&mut self, to: Which, mark: JumpMark) -> Result<KexecReport> {
        let jump_at = self
            .console_since(mark.console)
            .iter()
            .rev()
            .find(|l| l.text.contains(KEXEC_CONSOLE_LINE))
            .map(|l| l.at)
            .unwrap_or_else(|| self.epoch.elapsed());
        self.follow(to, mark, jump_at, "jump")
    }

    /// The new boot after a jump at `jump_at` (time since the epoch).
    fn follow(&mut self, to: Which, mark: JumpMark, jump_at: Duration, what: &str) -> Result<KexecReport> {
        let k = env()?.kernel(to).clone();
        let (from_release, console_from, mark) = (self.release.clone(), mark.console, mark.ctl);
        let stage = format!("kexec {from_release} -> {}", k.release);
        let started = self.wait_console(console_from, INIT_STARTED, KEXEC_TIMEOUT).map_err(|e| self.fail(&stage, e))?;
        if !started.text.contains(&k.release) {
            return Err(self.fail(&stage, format!("seamless-init started on the wrong kernel: {}", started.text)));
        }
        let handover =
            self.wait_console(console_from, INIT_HANDOVER, KEXEC_TIMEOUT).map_err(|e| self.fail(&stage, e))?;
        let init_ms = number_after(&handover.text, "after").unwrap_or(0);
        let (release, ready_at) = self.wait_ready(mark).map_err(|e| self.fail(&stage, e))?;
        if release != k.release {
            return Err(self.fail(&stage, format!("guest runs {release} after the kexec, expected {}", k.release)));
        }
        self.release = release.clone();
        self.current = to;
        let jump_to_init = started.at.saturating_sub(jump_at);
        self.stages.push((format!("{what} to /init of {release}"), jump_to_init));
        self.stages.push((format!("seamless-init on {release}"), Duration::from_millis(init_ms)));
        self.stages.push((format!("{what} to control shell of {release}"), ready_at.saturating_sub(jump_at)));
        Ok(KexecReport { release, jump_to_init, init_ms, console_from })
    }

    /// The stage timings so far, one per line.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for (name, d) in &self.stages {
            s.push_str(&format!("  {name:<48} {:>8.3} s\n", d.as_secs_f64()));
        }
        s.push_str(&format!("  {:<48} {:>8.3} s\n", "total VM time", self.epoch.elapsed().as_secs_f64()));
        s
    }
}

type Spawned = (Child, Stream, Stream, Stream, UnixStream);

/// Starts QEMU (`program`, `args`), pumps its console and stderr, and connects to its control
/// socket (`work/ctl.sock`); the logs are `console{suffix}.log` and `control{suffix}.log`.
fn spawn_qemu(
    (program, args): &(std::ffi::OsString, Vec<std::ffi::OsString>),
    epoch: Instant,
    work: &std::path::Path,
    suffix: &str,
) -> Result<Spawned> {
    let sock = work.join("ctl.sock");
    let mut cmd = Command::new(program);
    // stdin is the serial console's input (ttyS0): a test can answer a prompt there.
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let echo = std::env::var_os("SEAMLESS_VM_ECHO").is_some();
    let log = |name: &str| std::fs::File::create(work.join(format!("{name}{suffix}.log"))).ok();
    let console = Stream::new(epoch, log("console"), echo.then_some("ttyS0"));
    let ctl = Stream::new(epoch, log("control"), echo.then_some("ttyS1"));
    let qemu_err = Stream::new(epoch, None, None);
    if let Some(o) = child.stdout.take() {
        console.pump(o);
    }
    if let Some(e) = child.stderr.take() {
        qemu_err.pump(e);
    }
    let connect_deadline = Instant::now() + Duration::from_secs(20);
    let ctl_writer = loop {
        match UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() > connect_deadline => {
                let _ = child.kill();
                bail!("connecting to QEMU's control socket {}: {e}; qemu: {}", sock.display(), qemu_err.tail(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    ctl.pump(ctl_writer.try_clone()?);
    Ok((child, console, ctl, qemu_err, ctl_writer))
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("vm {}: stage timings\n{}", self.name, self.report());
        let _ = std::fs::remove_file(self.work.join("root.img"));
        let _ = std::fs::remove_file(self.work.join("ctl.sock"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(number_after("seamless-init: handing over to /sbin/init after 123 ms (x)", "after"), Some(123));
    }
}
