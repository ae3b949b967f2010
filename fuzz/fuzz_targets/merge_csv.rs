//! A merge CSV file as `mailctl merge` (and the desktop application's "Diffusion aux familles")
//! reads it: any bytes give a table or a named error, never a panic; the table's cells carry
//! no surrounding blanks and come from the file's text.
#![no_main]

use libfuzzer_sys::fuzz_target;

use postecole_table as table;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = table::parse(data) {
        let text = table::decode(data).replace('"', "");
        for cell in t.header.iter().chain(t.rows.iter().flatten()) {
            assert_eq!(cell.trim(), cell);
            // Quotes may be doubled or removed; the cell's first line is in the text.
            let line = cell.lines().next().unwrap_or_default().replace('"', "");
            assert!(text.contains(&line), "{cell:?}");
        }
    }
});
