//! A merge CSV as schools' software exports it, read into a header and rows: UTF-8 (with or
//! without BOM) or else Windows-1252, `;` or `,`. mailctl, the desktop application and the fuzz
//! target (`fuzz/fuzz_targets/merge_csv.rs`) read it through this one crate, so that a file
//! means the same rows everywhere.

pub use csv::Error;

/// The CSV's text: UTF-8 (with or without BOM), else Windows-1252.
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

/// `;` when the header has more of them than `,` (French spreadsheet exports).
pub fn delimiter(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or_default();
    if header.matches(';').count() > header.matches(',').count() {
        b';'
    } else {
        b','
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The header (trimmed) and every row (cells trimmed; rows may be shorter or longer).
pub fn parse(bytes: &[u8]) -> Result<Table, csv::Error> {
    let text = decode(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(&text))
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let rows = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(|c| c.trim().to_owned()).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()?;
    Ok(Table { header, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_and_semicolons() {
        let bytes = b"nom;email\nL\xe9a;lea@example.org\n";
        let text = decode(bytes);
        assert_eq!(text, "nom;email\nLéa;lea@example.org\n");
        assert_eq!(delimiter(&text), b';');
        assert_eq!(decode("\u{feff}a,b".as_bytes()), "a,b");
        assert_eq!(delimiter("a,b;c,d"), b',');
        let table = parse(bytes).unwrap();
        assert_eq!(table.header, ["nom", "email"]);
        assert_eq!(table.rows, [["Léa", "lea@example.org"]]);
    }
}
