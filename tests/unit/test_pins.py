"""auth/pins.py: the rules for new PINs and bcrypt hashing over a SHA-256 pre-hash."""

from __future__ import annotations

import pytest

from orthanc_nas.auth.pins import PinHasher, PinRejected, check_new_pin, common_pins, normalize

GOOD = "Blue-Harbor-PIN-2024!"


@pytest.fixture(scope="module")
def hasher() -> PinHasher:
    return PinHasher(4)


def fullwidth(text: str) -> str:
    """The fullwidth form of printable ASCII (U+FF01..U+FF5E), e.g. "1" -> U+FF11."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def check(pin: str, username: str = "alice", lo: int = 10, hi: int = 128, score: int = 3,
          inputs: tuple[str, ...] = ()) -> None:
    check_new_pin(pin, username=username, min_length=lo, max_length=hi, min_score=score,
                  user_inputs=inputs)


def rejection(pin: str, username: str = "alice", lo: int = 10, hi: int = 128, score: int = 3,
              inputs: tuple[str, ...] = ()) -> str:
    with pytest.raises(PinRejected) as info:
        check(pin, username, lo, hi, score, inputs)
    return str(info.value)


# ---- rules -------------------------------------------------------------------------------


def test_good_pin_passes() -> None:
    check(GOOD)
    check("7391-kestrel-58", username="admin")


def test_too_short() -> None:
    assert rejection("Abc-123-x") == "the PIN must have at least 10 characters"
    check("Abc-123-xy")  # exactly the minimum
    assert "at least 12" in rejection("Abc-123-xyz", lo=12)


def test_too_long() -> None:
    pin = "k7-Harbor-Lupine-Quartz-9041-Meadow-Falcon-Xylo-2286-Tundra-Obel"
    assert len(pin) == 64
    check(pin, hi=64)
    assert rejection(pin + "q", hi=64) == "the PIN must have at most 64 characters"


def test_length_counts_normalized_characters() -> None:
    # 10 fullwidth characters are 10 characters after NFKC; one ligature becomes two letters.
    # (The strength estimate is another rule: off here.)
    assert len(fullwidth("Blue-har91")) == 10
    check(fullwidth("Blue-har91"), score=0)
    assert len("\ufb01shing-71") == 9
    check("\ufb01shing-71", score=0)  # the fi-ligature is two letters: "fishing-71" has 10
    assert "at least" in rejection("\ufb01shing-7", score=0)


@pytest.mark.parametrize("pin", ["password123", "qwertyuiop", "1212121212"])
def test_common_pin_is_refused(pin: str) -> None:
    assert pin in common_pins()
    assert rejection(pin) == "this PIN is too common: choose another"


def test_common_pin_check_ignores_case() -> None:
    assert "password123" in common_pins()
    assert rejection("PassWord123") == "this PIN is too common: choose another"


def test_blocklist_is_lower_cased_and_substantial() -> None:
    pins = common_pins()
    assert len(pins) > 1000
    assert all(p == p.lower() and p == p.strip() and p for p in pins)


def test_pin_containing_the_username_is_refused() -> None:
    assert rejection("my-ALICE-pin-77", username="alice") == (
        "the PIN must not contain the username")
    assert rejection("xx-alice-42-yy", username="Alice") == (
        "the PIN must not contain the username")
    check("my-ALICE-pin-77", username="bob")
    check("my-ALICE-pin-77", username="")  # no username: nothing to compare


@pytest.mark.parametrize("pin", ["zqzqzqzqzqzq", "zzzzzzzzzzzzzz", "Q7Q7Q7Q7Q7Q7"])
def test_one_or_two_distinct_characters_are_refused(pin: str) -> None:
    assert pin.lower() not in common_pins()
    assert rejection(pin) == "the PIN must not repeat one or two characters"


def test_three_distinct_characters_are_enough_for_that_rule() -> None:
    pin = "zqxzqxzqxzqx"
    assert pin not in common_pins()
    check(pin, score=0)
    assert "too easy to guess" in rejection(pin)  # the strength estimate still refuses it


# ---- strength estimate (zxcvbn) -----------------------------------------------------------


@pytest.mark.parametrize(("pin", "why"), [
    ("abcabcabca", 'repeats like "abcabcabc"'),
    ("Welcome2024!", "similar to a commonly used password"),
    ("ab ab ab ab", 'repeats like "abcabcabc"'),
])
def test_guessable_pins_are_refused_saying_why(pin: str, why: str) -> None:
    assert pin.lower() not in common_pins()  # the blocklist alone let these through
    check(pin, score=0)
    message = rejection(pin)
    assert message.startswith("this PIN is too easy to guess: ") and why in message
    assert "Add another word or two" in message  # zxcvbn's advice comes along


def test_the_users_own_names_count_as_guessable_words() -> None:
    pin = "Kowalczyk-2024"
    check(pin, username="alice")  # a rare surname: strong enough for a stranger
    assert "too easy to guess" in rejection(pin, username="alice",
                                            inputs=("Zbigniew Kowalczyk",))  # display name
    assert "too easy to guess" in rejection(pin, username="alice",
                                            inputs=("kowalczyk@clinic.example",))  # email


@pytest.mark.parametrize("pin", ["Initial-Bootstrap-PIN-2024", "Blue-Harbor-PIN-2024!",
                                 "Temporary-PIN-4711", "Own-Secret-PIN-0815",
                                 "Another-Secret-77", "Good-Enough-PIN-1", "7391-kestrel-58"])
def test_the_pins_the_tests_use_are_strong_enough(pin: str) -> None:
    check(pin, username="admin")


def test_long_pins_are_estimated_on_their_start() -> None:
    check("k7-Harbor-Lupine-Quartz-9041-" * 4)  # 116 characters: zxcvbn takes 72 at most


# ---- hashing ------------------------------------------------------------------------------


def test_hash_and_verify(hasher: PinHasher) -> None:
    hashed = hasher.hash(GOOD)
    assert hashed.startswith("$2b$04$")
    assert GOOD not in hashed
    assert hasher.verify(GOOD, hashed)
    assert not hasher.verify(GOOD + "x", hashed)
    assert not hasher.verify(GOOD.lower(), hashed)
    assert not hasher.verify("", hashed)


def test_hashes_are_salted(hasher: PinHasher) -> None:
    assert hasher.hash(GOOD) != hasher.hash(GOOD)


def test_cost_is_applied() -> None:
    assert PinHasher(5).hash(GOOD).startswith("$2b$05$")


def test_no_truncation_at_72_bytes(hasher: PinHasher) -> None:
    prefix = "k7-Harbor-" * 8  # 80 characters, past bcrypt's 72-byte limit
    one = prefix + "A" * 20
    two = prefix + "B" * 20
    assert len(one) == len(two) == 100
    assert one[:72] == two[:72]
    hashed = hasher.hash(one)
    assert hasher.verify(one, hashed)
    assert not hasher.verify(two, hashed)
    assert not hasher.verify(one[:72], hashed)


def test_unicode_pins(hasher: PinHasher) -> None:
    pins = ("Grüße-aus-Köln-2024", "日本語のピンコード123", "παράδειγμα-κωδικός",
            "\U0001f433-whale-\U0001f40b-42")
    for pin in pins:
        hashed = hasher.hash(pin)
        assert hasher.verify(pin, hashed)
        assert not hasher.verify(pin[:-1], hashed)
    assert not hasher.verify("Grusse-aus-Koln-2024", hasher.hash("Grüße-aus-Köln-2024"))


def test_nfkc_normalization(hasher: PinHasher) -> None:
    ascii_pin = "Harbor-2024"
    wide = fullwidth(ascii_pin)
    assert wide != ascii_pin and wide[-1] == "\uff14"
    assert normalize(wide) == ascii_pin
    assert hasher.verify(ascii_pin, hasher.hash(wide))
    assert hasher.verify(wide, hasher.hash(ascii_pin))
    assert hasher.verify(fullwidth("2024-1234-99"), hasher.hash("2024-1234-99"))
    # Composed and decomposed forms of the same letter are the same PIN.
    assert hasher.verify("Cafe\u0301-2024-x", hasher.hash("Caf\u00e9-2024-x"))


def test_verify_dummy_is_always_false(hasher: PinHasher) -> None:
    assert hasher.verify_dummy("not a real PIN: equalizes timing") is False
    assert hasher.verify_dummy(GOOD) is False
    assert hasher.verify_dummy("") is False


@pytest.mark.parametrize("bad", ["", "not-a-hash", "$2b$04$abc", "$2b$99$" + "a" * 53])
def test_malformed_hash_does_not_verify(hasher: PinHasher, bad: str) -> None:
    assert hasher.verify(GOOD, bad) is False


def test_truncated_hash_does_not_verify(hasher: PinHasher) -> None:
    hashed = hasher.hash(GOOD)
    assert hasher.verify(GOOD, hashed[:-5]) is False
