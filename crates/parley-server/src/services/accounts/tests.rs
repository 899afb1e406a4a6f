//! The account rules' unit tests.

use super::*;

#[test]
fn one_rule_for_one_time_codes() {
    let hash = sha256(b"123456");
    assert_eq!(check_code(" 123456 ", &hash, 100, 0, 99), CodeCheck::Valid);
    assert_eq!(check_code("123457", &hash, 100, 2, 99), CodeCheck::Wrong);
    assert_eq!(
        check_code("123456", &hash, 100, 0, 100),
        CodeCheck::Dead,
        "expired"
    );
    assert_eq!(
        check_code("123456", &hash, 100, MAX_CODE_TRIES, 99),
        CodeCheck::Valid,
        "the last try counts"
    );
    assert_eq!(
        check_code("123456", &hash, 100, MAX_CODE_TRIES + 1, 99),
        CodeCheck::Dead,
        "a try beyond the last is not even compared"
    );
}
