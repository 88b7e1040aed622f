/*
 * text: UTF-8 validity and character counts (overlong forms, surrogates, controls),
 * base64url round trips and the strictness of decoding, ASCII lower-casing, the
 * generic length check and the update_mask lookup, with their field violations.
 */
#include <check.h>
#include <string.h>

#include "check_util.h"
#include "common/arena.h"
#include "common/err.h"
#include "common/text.h"

#define TEST_TIMEOUT_S 30

START_TEST(test_utf8_len_counts_code_points_not_bytes)
{
    ck_assert_int_eq(text_utf8_len("", TEXT_NO_CONTROLS), 0);
    ck_assert_int_eq(text_utf8_len("abc", TEXT_NO_CONTROLS), 3);
    ck_assert_int_eq(text_utf8_len("h\xc3\xa9llo", TEXT_NO_CONTROLS), 5);      /* é */
    ck_assert_int_eq(text_utf8_len("\xe2\x82\xac", TEXT_NO_CONTROLS), 1);      /* € */
    ck_assert_int_eq(text_utf8_len("\xf0\x9f\x98\x80!", TEXT_NO_CONTROLS), 2); /* 😀 */
    ck_assert_int_eq(text_utf8_len("\xf4\x8f\xbf\xbf", TEXT_NO_CONTROLS), 1);  /* U+10FFFF */
    ck_assert_int_eq(text_utf8_len("\xc2\xa0", TEXT_NO_CONTROLS), 1);          /* NBSP */
}
END_TEST

START_TEST(test_utf8_rejects_malformed_sequences)
{
    static const char *bad[] = {
        "\x80",                 /* lone continuation byte */
        "a\xc3",                /* truncated at the end */
        "\xc3(",                /* bad continuation */
        "\xc0\xaf",             /* overlong "/" */
        "\xe0\x80\xaf",         /* overlong, three bytes */
        "\xf0\x80\x80\xaf",     /* overlong, four bytes */
        "\xed\xa0\x80",         /* surrogate U+D800 */
        "\xed\xbf\xbf",         /* surrogate U+DFFF */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf8\x88\x80\x80\x80", /* five-byte form */
        "\xff",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(!text_utf8_valid(bad[i]), "accepted case %zu", i);
        ck_assert_int_eq(text_utf8_len(bad[i], TEXT_ALLOW_CONTROLS), -1);
    }
    ck_assert(text_utf8_valid(""));
    ck_assert(text_utf8_valid("\xed\x9f\xbf")); /* U+D7FF, just below the surrogates */
    ck_assert(text_utf8_valid("\xee\x80\x80")); /* U+E000, just above */
}
END_TEST

START_TEST(test_utf8_len_applies_the_control_flags)
{
    /* No controls: C0, DEL and C1 all fail, even tab and newline. */
    ck_assert_int_eq(text_utf8_len("a\tb", TEXT_NO_CONTROLS), -1);
    ck_assert_int_eq(text_utf8_len("a\nb", TEXT_NO_CONTROLS), -1);
    ck_assert_int_eq(text_utf8_len("a\x7f", TEXT_NO_CONTROLS), -1);
    ck_assert_int_eq(text_utf8_len("a\xc2\x85", TEXT_NO_CONTROLS), -1); /* NEL, C1 */
    ck_assert_int_eq(text_utf8_len("a\xc2\x9f", TEXT_NO_CONTROLS), -1); /* last C1 */
    /* Blanks: tab, LF and CR only. */
    ck_assert_int_eq(text_utf8_len("a\tb\r\nc", TEXT_ALLOW_BLANKS), 6);
    ck_assert_int_eq(text_utf8_len("a\x01", TEXT_ALLOW_BLANKS), -1);
    ck_assert_int_eq(text_utf8_len("a\xc2\x85", TEXT_ALLOW_BLANKS), -1);
    /* All controls, but never malformed UTF-8. */
    ck_assert_int_eq(text_utf8_len("\x01\x1f\x7f\xc2\x85", TEXT_ALLOW_CONTROLS), 4);
    ck_assert_int_eq(text_utf8_len("\x01\xc3", TEXT_ALLOW_CONTROLS), -1);
    ck_assert(text_utf8_valid("tab\there"));
}
END_TEST

START_TEST(test_check_chars_adds_one_violation_naming_the_field)
{
    err_t err = ERR_INIT;
    ck_assert_int_eq(text_check_chars("name", "ab", 1, 2, &err), 0);
    ck_assert_int_eq(text_check_chars("name", "\xc3\xa9\xc3\xa9", 1, 2, &err), 0);
    ck_assert_int_eq(err.code, ERR_OK);
    ck_assert_uint_eq(err.n_fields, 0);

    ck_assert_int_eq(text_check_chars("name", "abc", 1, 2, &err), ERR_INVALID);
    ck_assert_int_eq(text_check_chars("city", "", 1, 2, &err), ERR_INVALID);
    ck_assert_int_eq(text_check_chars("line2", "a\nb", 0, 200, &err), ERR_INVALID);
    ck_assert_int_eq(text_check_chars("line2", "\xc0\xaf", 0, 200, &err), ERR_INVALID);
    ck_assert_uint_eq(err.n_fields, 4);
    ck_assert_str_eq(err.fields[0].field, "name");
    ck_assert_str_eq(err.fields[0].description, "must be 1..2 characters");
    ck_assert_str_eq(err.fields[1].field, "city");
    ck_assert_str_eq(err.fields[2].description, "must be utf-8 text without control characters");
    ck_assert_str_eq(err.fields[3].description, "must be utf-8 text without control characters");
}
END_TEST

START_TEST(test_utf8_repair_replaces_each_bad_byte)
{
    arena_t *a = arena_new(0);
    const char *ok = "caf\xc3\xa9 \xf0\x9f\x98\x80";
    char *out = text_utf8_repair(a, ok);
    ck_assert_ptr_ne(out, ok);
    ck_assert_str_eq(out, ok);
    /* A stray continuation byte, a truncated sequence, an overlong form, a surrogate. */
    ck_assert_str_eq(text_utf8_repair(a, "a\x80z"), "a\xef\xbf\xbdz");
    ck_assert_str_eq(text_utf8_repair(a, "\xc3"), "\xef\xbf\xbd");
    ck_assert_str_eq(text_utf8_repair(a, "\xd0\xc7!"), "\xef\xbf\xbd\xef\xbf\xbd!");
    ck_assert_str_eq(text_utf8_repair(a, "\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert_str_eq(text_utf8_repair(a, "\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert(text_utf8_valid(text_utf8_repair(a, "\xff\xfe\xf4\x90\x80\x80")));
    ck_assert_str_eq(text_utf8_repair(a, ""), "");
    arena_free(a);
}
END_TEST

START_TEST(test_ascii_lower_copies_into_the_arena)
{
    arena_t *a = arena_new(0);
    const char *in = "0B6F5C1E-8D2A-4C3B-9E7F-1A2B3C4D5E6F \xc3\x89";
    char *out = text_ascii_lower(a, in);
    ck_assert_ptr_ne(out, in);
    ck_assert_str_eq(out, "0b6f5c1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f \xc3\x89");
    ck_assert_str_eq(text_ascii_lower(a, ""), "");
    arena_free(a);
}
END_TEST

START_TEST(test_email_canon_trims_ascii_blanks_and_folds_ascii_case_only)
{
    arena_t *a = arena_new(0);
    /* Every variant the login limiter once counted apart from the account itself. */
    const char *same[] = {"Alice@Example.COM", " alice@example.com", "alice@example.com\t",
                          "\t\r\n\v\f alice@EXAMPLE.com \n"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        ck_assert_str_eq(text_email_canon(a, same[i]), "alice@example.com");
    /* Inner blanks stay (such an address is refused elsewhere), non-ASCII is not folded. */
    ck_assert_str_eq(text_email_canon(a, "a b@x.io"), "a b@x.io");
    ck_assert_str_eq(text_email_canon(a, "\xc3\x89LISE@X.IO"), "\xc3\x89lise@x.io");
    ck_assert_str_eq(text_email_canon(a, " \t "), "");
    arena_free(a);
}
END_TEST

START_TEST(test_base64url_matches_rfc4648_vectors_unpadded)
{
    static const struct {
        const char *plain, *coded;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    arena_t *a = arena_new(0);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        ck_assert_str_eq(text_base64url_encode(a, v[i].plain, strlen(v[i].plain)), v[i].coded);
        char out[16];
        size_t n = 99;
        ck_assert_int_eq(text_base64url_decode(v[i].coded, out, sizeof(out), &n), 0);
        ck_assert_uint_eq(n, strlen(v[i].plain));
        ck_assert_str_eq(out, v[i].plain);
    }
    /* The url-safe alphabet: 0xfb 0xff encodes with '-' and '_', never '+' or '/'. */
    const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
    ck_assert_str_eq(text_base64url_encode(a, bytes, sizeof(bytes)), "-_-_");
    arena_free(a);
}
END_TEST

START_TEST(test_base64url_round_trips_every_byte_value)
{
    arena_t *a = arena_new(0);
    unsigned char in[256], out[257];
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)(255 - i);
    for (size_t len = 0; len <= sizeof(in); len += 37) {
        char *coded = text_base64url_encode(a, in, len);
        ck_assert_uint_eq(strlen(coded), (len * 4 + 2) / 3);
        size_t n = 0;
        ck_assert_int_eq(text_base64url_decode(coded, out, sizeof(out), &n), 0);
        ck_assert_uint_eq(n, len);
        ck_assert_int_eq(memcmp(in, out, len), 0);
        ck_assert_int_eq(out[n], '\0');
    }
    arena_free(a);
}
END_TEST

START_TEST(test_base64url_decode_accepts_only_the_exact_encoding)
{
    static const char *bad[] = {
        "Zm9v!", /* outside the alphabet */
        "Zm+v",  /* standard base64, not url-safe */
        "Zm/v",  /* likewise */
        "Zg==",  /* padding */
        "Zm9vY", /* 4k+1 characters can encode nothing */
        "Z",     /* likewise */
        "Zh",    /* non-zero unused bits: "f" is Zg */
        "Zm9",   /* non-zero unused bits: "fo" is Zm8 */
        "Zm 9v", /* blank */
    };
    char out[32];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(text_base64url_decode(bad[i], out, sizeof(out), NULL) == ERR_INVALID,
                      "accepted %s", bad[i]);
    /* Embedded NUL bytes decode (the count tells them from the end). */
    size_t n = 0;
    ck_assert_int_eq(text_base64url_decode("YQBi", out, sizeof(out), &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(memcmp(out, "a\0b", 3), 0);
}
END_TEST

START_TEST(test_base64url_decode_refuses_output_past_cap)
{
    char out[4];
    /* "foo" needs 3 bytes and the NUL: fits exactly in 4, not in 3. */
    ck_assert_int_eq(text_base64url_decode("Zm9v", out, 4, NULL), 0);
    ck_assert_str_eq(out, "foo");
    ck_assert_int_eq(text_base64url_decode("Zm9v", out, 3, NULL), ERR_INVALID);
    ck_assert_int_eq(text_base64url_decode("Zm9vYg", out, 4, NULL), ERR_INVALID);
    ck_assert_int_eq(text_base64url_decode("", out, 1, NULL), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(text_base64url_decode("", out, 0, NULL), ERR_INVALID);
}
END_TEST

enum { F_SKU = 1, F_NAME = 2, F_ACTIVE = 4 };
static const text_mask_name_t mask_names[] = {
    {"sku", F_SKU}, {"name", F_NAME}, {"active", F_ACTIVE}};

START_TEST(test_mask_bits_unions_the_named_fields)
{
    err_t err = ERR_INIT;
    char *mask[] = {"active", "sku", "active"};
    ck_assert_uint_eq(text_mask_bits(mask, 3, mask_names, 3, &err), F_ACTIVE | F_SKU);
    ck_assert_int_eq(err.code, ERR_OK);
    ck_assert_uint_eq(err.n_fields, 0);
}
END_TEST

START_TEST(test_mask_bits_reports_empty_and_unknown_names)
{
    err_t err = ERR_INIT;
    ck_assert_uint_eq(text_mask_bits(NULL, 0, mask_names, 3, &err), 0);
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_uint_eq(err.n_fields, 1);
    ck_assert_str_eq(err.fields[0].field, "update_mask");
    ck_assert_str_eq(err.fields[0].description, "must name at least one field");

    err_clear(&err);
    char *mask[] = {"Name", "name", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyyy"};
    ck_assert_uint_eq(text_mask_bits(mask, 3, mask_names, 3, &err), F_NAME);
    ck_assert_int_eq(err.code, ERR_INVALID);
    ck_assert_uint_eq(err.n_fields, 2);
    ck_assert_str_eq(err.fields[0].description, "unknown field \"Name\"");
    ck_assert_str_eq(err.fields[1].description,
                     "unknown field \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"");
}
END_TEST

static Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *utf8 = check_case(s, "utf8", TEST_TIMEOUT_S);
    tcase_add_test(utf8, test_utf8_len_counts_code_points_not_bytes);
    tcase_add_test(utf8, test_utf8_rejects_malformed_sequences);
    tcase_add_test(utf8, test_utf8_len_applies_the_control_flags);
    tcase_add_test(utf8, test_check_chars_adds_one_violation_naming_the_field);
    tcase_add_test(utf8, test_utf8_repair_replaces_each_bad_byte);
    tcase_add_test(check_case(s, "lower", TEST_TIMEOUT_S), test_ascii_lower_copies_into_the_arena);
    tcase_add_test(check_case(s, "email", TEST_TIMEOUT_S),
                   test_email_canon_trims_ascii_blanks_and_folds_ascii_case_only);
    TCase *b64 = check_case(s, "base64url", TEST_TIMEOUT_S);
    tcase_add_test(b64, test_base64url_matches_rfc4648_vectors_unpadded);
    tcase_add_test(b64, test_base64url_round_trips_every_byte_value);
    tcase_add_test(b64, test_base64url_decode_accepts_only_the_exact_encoding);
    tcase_add_test(b64, test_base64url_decode_refuses_output_past_cap);
    TCase *mask = check_case(s, "mask", TEST_TIMEOUT_S);
    tcase_add_test(mask, test_mask_bits_unions_the_named_fields);
    tcase_add_test(mask, test_mask_bits_reports_empty_and_unknown_names);
    return s;
}

int main(void)
{
    return check_run(text_suite(), CK_FORK_GETENV);
}
