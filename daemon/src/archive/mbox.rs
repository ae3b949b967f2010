//! Writing archived mail back out as an mbox. (Listings read Subject and To from the
//! groups' indexes: `postecole_archive::log`.)

/// An mbox "From " line and body with ">From " quoting, for `ExportMbox`.
pub fn mbox_entry(out: &mut Vec<u8>, sender: &str, date: u64, message: &[u8]) {
    out.extend_from_slice(format!("From {sender} {}\n", asctime(date)).as_bytes());
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    for line in text.lines() {
        if line.trim_start_matches('>').starts_with("From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// `Thu Nov 26 10:00:00 2026`, as mbox "From " lines want it (UTC).
fn asctime(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_quotes_from_lines_and_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_795_600_000), "Wed Nov 25 09:46:40 2026");
        let mut out = Vec::new();
        mbox_entry(
            &mut out,
            "a@b.fr",
            0,
            b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("From a@b.fr Thu Jan  1 00:00:00 1970\n"));
        assert!(text.contains("\n>From here\n>>From there\n"), "{text}");
    }
}
