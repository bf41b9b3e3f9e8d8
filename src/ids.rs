//! Russian taxpayer identifiers — INN (ИНН), KPP (КПП) and OGRN/OGRNIP (ОГРН/ОГРНИП) — as validated
//! newtypes.
//!
//! A value of one of these types is always well-formed (length, alphabet and, where the number has one,
//! the check digit), so the rest of the crate can compare and store them without re-checking. The check
//! digits matter: a mistyped INN in a client's mail must not silently match another client.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier. The messages name the value and the defect so that a person
/// reading a log or a CLI error knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{value:?} is not an {kind}: it must be {expected}")]
    Length {
        kind: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{value:?} is not an {kind}: only digits are allowed")]
    NotDigits { kind: &'static str, value: String },
    #[error("{value:?} is not an {kind}: wrong check digit")]
    CheckDigit { kind: &'static str, value: String },
    #[error("{value:?} is not a KPP: it must be 4 digits, 2 digits or capital Latin letters, then 3 digits")]
    KppPattern { value: String },
}

/// Weights of the INN check digits, as published by the FNS. The 12-digit INN has two check digits;
/// the weights for the 11th are the 10-digit ones shifted by one position.
const INN10_WEIGHTS: [u32; 9] = [2, 4, 10, 3, 5, 9, 4, 6, 8];
const INN12_WEIGHTS_11: [u32; 10] = [7, 2, 4, 10, 3, 5, 9, 4, 6, 8];
const INN12_WEIGHTS_12: [u32; 11] = [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8];

fn digits(s: &str) -> Option<Vec<u32>> {
    s.bytes()
        .map(|b| b.is_ascii_digit().then(|| u32::from(b - b'0')))
        .collect()
}

fn weighted_check(d: &[u32], weights: &[u32]) -> u32 {
    let sum: u32 = d.iter().zip(weights).map(|(a, w)| a * w).sum();
    sum % 11 % 10
}

/// True when `s` is exactly a 10- or 12-digit INN with correct check digits.
pub fn is_valid_inn(s: &str) -> bool {
    inn_check(s).is_ok()
}

fn inn_check(s: &str) -> Result<(), IdError> {
    const KIND: &str = "INN";
    if s.len() != 10 && s.len() != 12 {
        return Err(IdError::Length {
            kind: KIND,
            value: s.to_owned(),
            expected: "10 digits (organisation) or 12 digits (individual)",
        });
    }
    let d = digits(s).ok_or_else(|| IdError::NotDigits {
        kind: KIND,
        value: s.to_owned(),
    })?;
    let ok = if d.len() == 10 {
        weighted_check(&d[..9], &INN10_WEIGHTS) == d[9]
    } else {
        weighted_check(&d[..10], &INN12_WEIGHTS_11) == d[10]
            && weighted_check(&d[..11], &INN12_WEIGHTS_12) == d[11]
    };
    if ok {
        Ok(())
    } else {
        Err(IdError::CheckDigit {
            kind: KIND,
            value: s.to_owned(),
        })
    }
}

fn kpp_check(s: &str) -> Result<(), IdError> {
    let b = s.as_bytes();
    let ok = b.len() == 9
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4..6]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && b[6..].iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(IdError::KppPattern {
            value: s.to_owned(),
        })
    }
}

fn ogrn_check(s: &str) -> Result<(), IdError> {
    const KIND: &str = "OGRN";
    if s.len() != 13 && s.len() != 15 {
        return Err(IdError::Length {
            kind: KIND,
            value: s.to_owned(),
            expected: "13 digits (ОГРН) or 15 digits (ОГРНИП)",
        });
    }
    let d = digits(s).ok_or_else(|| IdError::NotDigits {
        kind: KIND,
        value: s.to_owned(),
    })?;
    // 14 digits fit easily in u64, so the "number mod 11/13" rule can be computed directly.
    let (body, modulus) = if d.len() == 13 {
        (&d[..12], 11)
    } else {
        (&d[..14], 13)
    };
    let n = body.iter().fold(0u64, |acc, &x| acc * 10 + u64::from(x));
    let check = (n % modulus % 10) as u32;
    if check == d[d.len() - 1] {
        Ok(())
    } else {
        Err(IdError::CheckDigit {
            kind: KIND,
            value: s.to_owned(),
        })
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` exactly as given: no trimming, so callers decide what surrounding text to strip.
            pub fn parse(s: &str) -> Result<$name, IdError> {
                $check(s)?;
                Ok($name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        // Debug shows the bare digits: these values end up in test failures and logs, where
        // `Inn("7703703377")` is noise compared with the number itself.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $check(&s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

id_type!(
    /// Taxpayer identification number: 10 digits for an organisation, 12 for an individual
    /// (including an individual entrepreneur, ИП).
    Inn,
    inn_check
);
id_type!(
    /// Tax registration reason code of an organisation's registration (head office or branch).
    Kpp,
    kpp_check
);
id_type!(
    /// State registration number: 13 digits (ОГРН, organisation) or 15 digits (ОГРНИП, entrepreneur).
    Ogrn,
    ogrn_check
);

impl Inn {
    /// A 12-digit INN belongs to a natural person (an individual entrepreneur for our clients).
    pub fn is_individual(&self) -> bool {
        self.0.len() == 12
    }
}

impl Ogrn {
    /// A 15-digit number is an ОГРНИП, the registration of an individual entrepreneur.
    pub fn is_individual(&self) -> bool {
        self.0.len() == 15
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn valid_ten_and_twelve_digit_inns_are_accepted() {
        for s in [
            "9999000013",
            "9999000020",
            "1650991230",
            "0278994563",
            "7728997898",
            "999900000160",
            "165099000261",
            "027899000308",
        ] {
            let inn = Inn::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(inn.as_str(), s);
            assert_eq!(inn.is_individual(), s.len() == 12);
            assert!(is_valid_inn(s));
        }
    }

    #[test]
    fn an_inn_with_a_wrong_check_digit_is_rejected_with_a_readable_message() {
        let err = Inn::parse("9999000014").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"9999000014\" is not an INN: wrong check digit"
        );
        assert!(!is_valid_inn("9999000014"));
        assert!(!is_valid_inn("999900000161"));
    }

    #[test]
    fn inns_of_wrong_length_or_with_non_digits_are_rejected() {
        for s in [
            "",
            "999900001",
            "99990000130",
            "99990000l3",
            " 9999000013",
            "９９９９００００１３",
        ] {
            assert!(Inn::parse(s).is_err(), "{s:?}");
            assert!(!is_valid_inn(s), "{s:?}");
        }
        assert!(matches!(
            Inn::parse("99990000l3"),
            Err(IdError::NotDigits { .. })
        ));
        assert!(matches!(Inn::parse("123"), Err(IdError::Length { .. })));
    }

    #[test]
    fn kpps_with_digits_or_capital_latin_letters_in_positions_five_and_six_are_accepted() {
        for s in ["165001001", "027801001", "7728AB001"] {
            assert_eq!(Kpp::parse(s).map(|k| k.to_string()), Ok(s.to_owned()));
        }
        for s in [
            "16500100",
            "1650010011",
            "7728ab001",
            "77А8AB001",
            "AB2801001",
            "1650010A1",
        ] {
            assert!(Kpp::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn ogrn_and_ogrnip_check_digits_are_verified() {
        for s in ["1259900000007", "1021699001235", "1210299004563"] {
            let o = Ogrn::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(!o.is_individual());
        }
        for s in ["325990000000016", "318169900123455"] {
            let o = Ogrn::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(o.is_individual());
        }
        for s in [
            "1259900000008",
            "325990000000017",
            "12599000000",
            "12599000000AB",
        ] {
            assert!(Ogrn::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn identifiers_serialize_as_plain_strings_and_deserialization_validates() {
        let inn = Inn::parse("7728997898").unwrap();
        assert_eq!(serde_json::to_string(&inn).unwrap(), "\"7728997898\"");
        let back: Inn = serde_json::from_str("\"7728997898\"").unwrap();
        assert_eq!(back, inn);
        assert!(serde_json::from_str::<Inn>("\"9999000014\"").is_err());
        let kpp: Kpp = serde_json::from_str("\"7728AB001\"").unwrap();
        assert_eq!(String::from(kpp), "7728AB001");
    }

    #[test]
    fn debug_and_display_show_just_the_digits() {
        let inn: Inn = "1650991230".parse().unwrap();
        assert_eq!(format!("{inn:?}"), "1650991230");
        assert_eq!(format!("{inn}"), "1650991230");
        let ogrn = Ogrn::try_from("1021699001235".to_owned()).unwrap();
        assert_eq!(format!("{ogrn:?}"), "1021699001235");
    }
}
