//! Holds every packet of one NFQUEUE queue for a fixed time, then lets it go, in the order it
//! came: a network path of known length over loopback, on a kernel without `netem`.
//!
//! ```text
//! netdelay QUEUE DELAY_MS
//! ```
//!
//! Prints `ready` once bound to the queue, then runs until killed. The bench runs it in a network
//! namespace of its own, where every packet leaving loopback is queued to it: each packet is held
//! once, so a round trip takes twice DELAY_MS.
//!
//! The netlink exchange is written here rather than taken from a crate: the one pure-Rust NFQUEUE
//! crate keeps its socket to itself, so a program could not wait for "the next packet or the next
//! release time, whichever comes first" without spinning, and its verdicts go one packet at a
//! time. What this needs of the protocol is small: bind, ask for metadata only, and a batch
//! verdict, which in-order release makes exact ("every packet up to this one").

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeSpec;

// <linux/netfilter/nfnetlink.h>, <linux/netfilter/nfnetlink_queue.h>, <linux/netlink.h>.
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQA_CFG_F_GSO: u32 = 4;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
/// nlmsghdr (16 bytes) and nfgenmsg (4 bytes).
const HEADERS: usize = 20;

struct Queue {
    fd: OwnedFd,
    number: u16,
    seq: u32,
}

impl Queue {
    fn open(number: u16) -> nix::Result<Queue> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        // Room for a burst of packet notices: one that does not fit is a packet dropped.
        setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20))?;
        let mut queue = Queue { fd, number, seq: 0 };
        let pf_unspec = 0u16.to_be_bytes();
        queue.configure(&[(
            NFQA_CFG_CMD,
            &[NFQNL_CFG_CMD_BIND, 0, pf_unspec[0], pf_unspec[1]],
        )])?;
        // Metadata only: the packet's bytes need not cross into user space and back.
        let mut params = 0u32.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_META);
        queue.configure(&[(NFQA_CFG_PARAMS, &params)])?;
        queue.configure(&[(NFQA_CFG_QUEUE_MAXLEN, &65_536u32.to_be_bytes())])?;
        // Loopback's large segments queued whole, not cut up on the way in.
        queue.configure(&[
            (NFQA_CFG_FLAGS, &NFQA_CFG_F_GSO.to_be_bytes()),
            (NFQA_CFG_MASK, &NFQA_CFG_F_GSO.to_be_bytes()),
        ])?;
        Ok(queue)
    }

    fn message(&mut self, kind: u16, flags: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        self.seq += 1;
        let mut m = Vec::with_capacity(64);
        m.extend(0u32.to_ne_bytes());
        m.extend((NFNL_SUBSYS_QUEUE << 8 | kind).to_ne_bytes());
        m.extend((NLM_F_REQUEST | flags).to_ne_bytes());
        m.extend(self.seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the queue number.
        m.extend([0, 0]);
        m.extend(self.number.to_be_bytes());
        for (kind, value) in attrs {
            m.extend(((4 + value.len()) as u16).to_ne_bytes());
            m.extend(kind.to_ne_bytes());
            m.extend(*value);
            m.resize(m.len().next_multiple_of(4), 0);
        }
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    /// Sends a configuration message and waits for the kernel's acknowledgement.
    fn configure(&mut self, attrs: &[(u16, &[u8])]) -> nix::Result<()> {
        let m = self.message(NFQNL_MSG_CONFIG, NLM_F_ACK, attrs);
        send(self.fd.as_raw_fd(), &m, MsgFlags::empty())?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            for (kind, seq, payload) in messages(&buf[..n]) {
                if kind == NLMSG_ERROR && seq == self.seq {
                    let code = i32::from_ne_bytes(payload[..4].try_into().unwrap());
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(Errno::from_raw(-code))
                    };
                }
            }
        }
    }

    /// Lets through every packet of the queue up to `id`, all of them held long enough.
    fn release_up_to(&mut self, id: u32) -> nix::Result<()> {
        let mut verdict = NF_ACCEPT.to_be_bytes().to_vec();
        verdict.extend(id.to_be_bytes());
        let m = self.message(NFQNL_MSG_VERDICT_BATCH, 0, &[(NFQA_VERDICT_HDR, &verdict)]);
        send(self.fd.as_raw_fd(), &m, MsgFlags::empty()).map(drop)
    }
}

/// (type, sequence number, payload after the nlmsghdr) of each netlink message in `buf`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        let payload = &buf[16..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, seq, payload))
    })
}

/// The packet id of one packet notice (its NFQA_PACKET_HDR), given the whole message.
fn packet_id(message: &[u8]) -> Option<u32> {
    let mut attrs = message.get(HEADERS - 16..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[..2].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().unwrap()) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(attrs[4..8].try_into().unwrap()));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(number), Some(delay)) = (
        args.get(1).and_then(|a| a.parse::<u16>().ok()),
        args.get(2).and_then(|a| a.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: netdelay QUEUE DELAY_MS");
        std::process::exit(2);
    };
    let delay = Duration::from_secs_f64(delay / 1000.0);
    let mut queue = Queue::open(number).unwrap_or_else(|e| {
        eprintln!("netdelay: cannot bind NFQUEUE queue {number}: {e}");
        std::process::exit(1);
    });
    println!("ready");
    let mut held: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let now = Instant::now();
        let mut last = None;
        while let Some(&(at, id)) = held.front()
            && at + delay <= now
        {
            held.pop_front();
            last = Some(id);
        }
        if let Some(id) = last {
            queue.release_up_to(id).expect("verdict");
        }
        // Until the next packet arrives or the oldest one held is due, whichever comes first.
        let timeout = held
            .front()
            .map(|&(at, _)| TimeSpec::from_duration((at + delay).saturating_duration_since(now)));
        let mut fds = [PollFd::new(queue.fd.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, timeout, None) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => panic!("ppoll: {e}"),
        }
        let n = match recv(queue.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => panic!("recv: {e}"),
        };
        let arrived = Instant::now();
        for (kind, _, payload) in messages(&buf[..n]) {
            if kind == NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET
                && let Some(id) = packet_id(payload)
            {
                held.push_back((arrived, id));
            }
        }
    }
}
