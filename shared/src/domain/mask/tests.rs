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

/// The length rule that spares the library most id digit runs never says "not a number" where
/// the library would say "possible", for regions of every kind (national prefix or none,
/// prefixes stripped by pattern, international prefixes other than `00`), and it does answer
/// the long runs ids hold in the UK.
#[test]
fn ruling_out_by_length_agrees_with_the_library() {
    let regions = ["GB", "US", "DE", "FR", "IE", "AU", "NL", "IN", "BR", "AR", "JP", "RU", "CN", "IT", "MX", "ZA", "KR", "SE", "NZ", "HU"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut ruled_out = 0;
    for name in regions {
        let region: country::Id = name.parse().expect("a region");
        let code = phonenumber::metadata::DATABASE.by_id(name).expect("metadata").country_code().to_string();
        for i in 0..1500 {
            let len = 9 + (next() % 9) as usize;
            // Openings the parser treats specially: the calling code, a trunk 0, international prefixes.
            let opening = ["", "0", "00", "011", "810", "8", "1", code.as_str(), "0044"][i % 9];
            let mut digits: String = opening.chars().take(len).collect();
            while digits.len() < len {
                digits.push(char::from(b'0' + (next() % 10) as u8));
            }
            if too_long_for_region(region, &digits) {
                ruled_out += 1;
                assert!(
                    !possible_in(region, false, &digits),
                    "{digits} in {name}: ruled out by length, but the library reads a possible number"
                );
            }
        }
    }
    assert!(ruled_out > 1000, "the rule answers many long runs, not {ruled_out}");
    let gb: country::Id = "GB".parse().expect("GB");
    assert!(too_long_for_region(gb, "2025120100000010") && too_long_for_region(gb, "202512010000001"));
    assert!(!too_long_for_region(gb, "07700900123") && !too_long_for_region(gb, "00447700900123"));
}
