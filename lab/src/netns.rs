//! Several hosts on one machine: Linux network namespaces joined by veth
//! links to one switch (a bridge in its own namespace), on a private /24 the
//! lab makes for itself, with the root namespace (where the test runs) on the
//! switch too. A host's link can be cut by dropping every frame at both ends
//! (nftables `netdev` ingress), so TCP peers see silence, not a reset, and
//! restored. Everything is named after the test process (`nstest-<pid>-...`),
//! removed on drop (a panicking test included), and what a crashed earlier
//! run left behind is removed before a new lab is made.
//!
//! Needs root, iproute2 (`ip`) and nftables (`nft`, see `scripts/setup.sh`).

use std::process::Command;

/// First part of every namespace this module makes.
pub const PREFIX: &str = "nstest-";
/// First part of every interface this module makes in the root namespace.
const LINK_PREFIX: &str = "nst";
/// The lab's addresses are `10.213.<subnet>.<host>/24`.
const NET: &str = "10.213";
/// The root namespace's address on the switch.
const ROOT_HOST: u8 = 254;

/// Runs `ip`/`nft` with `args`; returns stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Loads nftables `rules` (`nft -f -`), inside network namespace `netns`
/// when given, else in the root namespace; returns stderr on failure.
pub(crate) fn load_rules(netns: Option<&str>, rules: &str) -> Result<(), String> {
    use std::io::Write;
    let mut command = match netns {
        Some(netns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns, "nft"]);
            c
        }
        None => Command::new("nft"),
    };
    let mut child = command
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft has no stdin")?
        .write_all(rules.as_bytes())
        .map_err(|e| format!("nft did not read its rules: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft did not end: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Deletes the nftables table `family` `table` in namespace `netns` (what
/// [`load_rules`] loaded there), panicking as [`must`] does.
fn delete_table(netns: &str, family: &str, table: &str) {
    must(
        "ip",
        &[
            "netns", "exec", netns, "nft", "delete", "table", family, table,
        ],
    );
}

/// Like [`run`], panicking with a message that says what the lab needs.
fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        panic!("cannot build the lab's network (needs root, iproute2 and nftables from scripts/setup.sh): {e}");
    }
}

fn stdout(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether process `pid` is alive.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the namespaces of lab runs whose process is gone (a crashed or
/// killed test). Deleting a namespace deletes the veth ends in it, and with
/// them their peers, the root namespace's included.
fn remove_leftovers() {
    for line in stdout("ip", &["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !alive(pid)) {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
    // A run that died while plugging may have left a veth in the root
    // namespace: `nst<pid><lab><kind><index>`.
    for line in stdout("ip", &["-o", "link", "show"]).lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        let Some(rest) = name.strip_prefix(LINK_PREFIX) else {
            continue;
        };
        let pid = rest
            .get(..rest.len().saturating_sub(3))
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !alive(pid)) {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

/// One host of the lab: a network namespace with one link to the switch.
#[derive(Debug, Clone)]
pub struct Host {
    /// What the test calls it (`a`, `b`, `c`).
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Its address on the switch.
    pub addr: String,
    /// Its end of the link, inside its namespace.
    link: String,
    /// The switch's end of its link, inside the switch's namespace.
    port: String,
}

/// Hosts on a switch, made by [`Lab::create`]; torn down on drop.
pub struct Lab {
    hosts: Vec<Host>,
    /// The namespace holding the bridge every link is plugged into.
    switch: String,
    /// The root namespace's address on the switch.
    root_addr: String,
    /// The root namespace's end of its link to the switch.
    pub root_link: String,
}

/// The nftables table that cuts a link.
const CUT_TABLE: &str = "nonstop_cut";
/// The nftables table that parts two hosts.
const PARTITION_TABLE: &str = "nonstop_partition";

impl Lab {
    /// Makes one namespace per name in `hosts` (loopback up), a switch, a
    /// link from each host and from the root namespace to the switch, and
    /// an address per host. Panics, saying why, when it cannot: the test
    /// then fails, it is never skipped.
    pub fn create(hosts: &[&str]) -> Lab {
        if let Err(e) = run("nft", &["--version"]) {
            panic!("the host lab needs nftables (`nft`; scripts/setup.sh installs it): {e}");
        }
        assert!(
            hosts.len() < 10,
            "at most 9 hosts (interface names are short)"
        );
        remove_leftovers();
        // Unique per lab: the process, and the lab's number in it (mod 10:
        // interface names have 15 characters at most).
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 10;
        let pid = std::process::id();
        let subnet = free_subnet(pid);
        let tag = format!("{pid}-{n}");
        let link_tag = format!("{LINK_PREFIX}{pid}{n}");
        let switch = format!("{PREFIX}{tag}-switch");
        let mut lab = Lab {
            hosts: Vec::new(),
            switch: switch.clone(),
            root_addr: format!("{NET}.{subnet}.{ROOT_HOST}"),
            root_link: format!("{link_tag}r0"),
        };
        must("ip", &["netns", "add", &switch]);
        must("ip", &["-n", &switch, "link", "set", "lo", "up"]);
        must(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        );
        must("ip", &["-n", &switch, "link", "set", "br0", "up"]);

        // The root namespace's link: its end stays here.
        let (root_end, root_port) = (format!("{link_tag}r0"), format!("{link_tag}q0"));
        lab.plug(&root_end, &root_port, None);
        must(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", lab.root_addr),
                "dev",
                &root_end,
            ],
        );
        must("ip", &["link", "set", &root_end, "up"]);

        for (i, name) in hosts.iter().enumerate() {
            let netns = format!("{PREFIX}{tag}-{name}");
            must("ip", &["netns", "add", &netns]);
            must("ip", &["-n", &netns, "link", "set", "lo", "up"]);
            let (link, port) = (format!("{link_tag}h{i}"), format!("{link_tag}p{i}"));
            let host = Host {
                name: name.to_string(),
                netns: netns.clone(),
                addr: format!("{NET}.{subnet}.{}", i + 1),
                link: link.clone(),
                port: port.clone(),
            };
            lab.plug(&link, &port, Some(&netns));
            must(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("{}/24", host.addr),
                    "dev",
                    &link,
                ],
            );
            must("ip", &["-n", &netns, "link", "set", &link, "up"]);
            lab.hosts.push(host);
        }
        lab
    }

    /// A veth pair: `end` moved into `netns` (or left in the root namespace),
    /// `port` into the switch, on its bridge.
    fn plug(&self, end: &str, port: &str, netns: Option<&str>) {
        must(
            "ip",
            &["link", "add", end, "type", "veth", "peer", "name", port],
        );
        must("ip", &["link", "set", port, "netns", &self.switch]);
        must(
            "ip",
            &["-n", &self.switch, "link", "set", port, "master", "br0"],
        );
        must("ip", &["-n", &self.switch, "link", "set", port, "up"]);
        if let Some(netns) = netns {
            must("ip", &["link", "set", end, "netns", netns]);
        }
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// The command prefix that runs a program on host `name`.
    pub fn on(&self, name: &str) -> Vec<String> {
        ["ip", "netns", "exec", &self.host(name).netns]
            .map(String::from)
            .to_vec()
    }

    /// Cuts host `name`'s link: every frame is dropped as it arrives at
    /// either end, so nothing gets through and nobody is told.
    pub fn cut(&self, name: &str) {
        let host = self.host(name);
        for (netns, dev) in [(&host.netns, &host.link), (&self.switch, &host.port)] {
            let rules = format!(
                "table netdev {CUT_TABLE} {{\n chain drop_all {{\n  type filter hook ingress device \"{dev}\" priority 0; policy drop;\n }}\n}}\n"
            );
            if let Err(e) = load_rules(Some(netns), &rules) {
                panic!("cannot cut {name}'s link in {netns}: {e}");
            }
        }
    }

    /// Undoes [`Lab::cut`].
    pub fn restore(&self, name: &str) {
        let host = self.host(name);
        for netns in [&host.netns, &self.switch] {
            delete_table(netns, "netdev", CUT_TABLE);
        }
    }

    /// Parts hosts `x` and `y`: each drops every packet from or to the other
    /// (silence, not a reset), while both still reach every other host.
    pub fn partition(&self, x: &str, y: &str) {
        for (host, other) in [(self.host(x), self.host(y)), (self.host(y), self.host(x))] {
            let peer = &other.addr;
            let rules = format!(
                "table inet {PARTITION_TABLE} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  ip saddr {peer} drop\n }}\n chain output {{\n  type filter hook output priority 0; policy accept;\n  ip daddr {peer} drop\n }}\n}}\n"
            );
            if let Err(e) = load_rules(Some(&host.netns), &rules) {
                panic!("cannot part {x} from {y} in {}: {e}", host.netns);
            }
        }
    }

    /// Undoes [`Lab::partition`].
    pub fn heal(&self, x: &str, y: &str) {
        for host in [self.host(x), self.host(y)] {
            delete_table(&host.netns, "inet", PARTITION_TABLE);
        }
    }

    /// Whether a TCP connection from host `from` to `addr:port` opens within
    /// 3 s.
    pub fn connects(&self, from: &str, addr: &str, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.host(from).netns, "timeout", "3"])
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The root namespace's link now (a deleted namespace's links go
        // later, when the kernel gets to it), then the switch and the hosts.
        let _ = run("ip", &["link", "del", &self.root_link]);
        let _ = run("ip", &["netns", "del", &self.switch]);
        for host in &self.hosts {
            let _ = run("ip", &["netns", "del", &host.netns]);
        }
    }
}

/// A /24 under 10.213 that no interface of the root namespace is on: one per
/// lab, so labs of parallel test processes never overlap.
fn free_subnet(pid: u32) -> u8 {
    let taken = stdout("ip", &["-4", "-o", "addr", "show"]);
    let start = pid % 200;
    (0..200)
        .map(|i| ((start + i) % 200 + 20) as u8)
        .find(|s| !taken.contains(&format!(" {NET}.{s}.")))
        .expect("a free 10.213.x.0/24")
}
