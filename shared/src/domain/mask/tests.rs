use super::*;

/// Written forms of UK and international numbers as contact-centre systems and people write them.
const NUMBERS: &[&str] = &[
    "0113 496 0123",
    "01134960123",
    "0113-496-0123",
    "0113.496.0123",
    "0113/496/0123",
    "0113_496_0123",
    "(0113) 496 0123",
    "(0113)4960123",
    "0113 4960123",
    "+44 113 496 0123",
    "+441134960123",
    "+44 (0)113 496 0123",
    "0044 113 496 0123",
    "00441134960123",
    "07700 900123",
    "07700900123",
    "07700_900123",
    "07700-900-123",
    "+44 7700 900123",
    "+447700900123",
    "0044 7700 900 123",
    "020 7946 0958",
    "(020) 7946 0958",
    "0207 946 0958",
    "0161 496 0000",
    "0800 123 4567",
    "0300 123 1234",
    "+1 202 555 0143",
    "+1 (202) 555-0143",
    "+33 1 23 45 67 89",
    "+353 1 234 5678",
    "+49 30 12345678",
    "+91 98765 43210",
    "０７７００ ９００１２３",
    "０１１３ ４９６ ０１２３",
];

/// Things that must stay: dates, times, call ids, crime references, postcodes, amounts.
const STAY: &[&str] = &[
    "2026-11-23",
    "23/11/2026",
    "21:14:03",
    "2026-11-23T21:14:03+00:00",
    "LC-20261123-004211",
    "crime ref 12345678",
    "CAD 4521 23/11",
    "LS1 4AP",
    "SW1A 1AA",
    "£1,250.00",
    "aged 45, 3 kids",
    "DOB 01/02/1980",
    "between 1300 and 1700",
    "99999",
    "12 34 56 78",
];

#[test]
fn every_written_form_of_a_number_is_masked_whole() {
    assert!(NUMBERS.len() >= 30);
    for n in NUMBERS {
        for text in [n.to_string(), format!("rang back on {n} at 10pm"), format!("call {n}."), format!("({n})")] {
            let out = mask(&text);
            let digits = out.chars().filter(|c| digit(*c).is_some()).count();
            let before = text.chars().filter(|c| digit(*c).is_some()).count();
            let left = before - n.chars().filter(|c| digit(*c).is_some()).count();
            assert_eq!(digits, left, "`{text}` became `{out}`");
            assert_eq!(out.chars().count(), text.chars().count(), "masking keeps the length");
        }
    }
}

#[test]
fn dates_times_ids_references_and_postcodes_stay() {
    for s in STAY {
        let text = format!("note: {s} seen");
        assert_eq!(mask(&text), text);
    }
}

#[test]
fn json_echo_masks_every_string_key_and_number() {
    let v = serde_json::json!({
        "notes": ["rang on 07700 900123"], "cli": "07700900123", "caller": {"phone": 7700900123u64},
        "07700900123": true, "n": 441134960123u64, "small": 12345, "ref": "LC-20261123-004211"
    });
    let text = mask_json(v).to_string();
    assert!(!text.contains("7700900123") && !text.contains("900123") && !text.contains("441134960123"), "{text}");
    assert!(text.contains("12345") && text.contains("LC-20261123-004211"), "{text}");
}

#[test]
fn masking_is_idempotent_and_leaves_no_run() {
    for n in NUMBERS {
        let once = mask(n);
        assert_eq!(mask(&once), once);
        let chars: Vec<char> = once.chars().collect();
        assert!(phone_like_runs(&chars).is_empty(), "{once}");
    }
}

#[test]
fn a_number_inside_a_longer_chain_of_digits_is_still_found() {
    let cases = [
        ("evt-07700900123-1", "evt-###########-1"),
        ("ref 12 07700 900123", "ref 12 ##### ######"),
        ("07700900123/2", "###########/2"),
        ("CAD 4521 0113 496 0123", "CAD 4521 #### ### ####"),
    ];
    for (text, want) in cases {
        assert_eq!(mask(text), want, "{text}");
    }
}
