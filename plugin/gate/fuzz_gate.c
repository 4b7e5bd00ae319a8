/*
 * libFuzzer harness for the C gate (gate.c, included whole so its static functions are reached):
 * the credential and key parsing of arbitrary headers and URIs, and the memory's one promise:
 * a request is allowed without asking Python only if Python allowed it before and said it may
 * be remembered (for any GET arguments, when the request has some), for one unambiguous
 * credential. Built and run briefly by tests/unit/test_gate_fuzz.py:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined plugin/gate/fuzz_gate.c -o fuzz_gate
 *
 * Input: method, Python's first answer, the GET argument counts of the two requests, then
 * NUL-separated strings: the URI, then header (key, value) pairs; a key of one byte \x01 or \x02
 * stands for "authorization" or "cookie", so that the fuzzer reaches both parsers at once.
 */

#include "gate.c"

#include <assert.h>

#define MAX_HEADERS 8

static int32_t firstAnswer_;
static int callsFirst_, callsSecond_;

static int32_t decide_first(int32_t method, const char *uri, const char *ip, uint32_t hc,
                            const char *const *hk, const char *const *hv, uint32_t gc,
                            const char *const *gk, const char *const *gv) {
  (void) method; (void) uri; (void) ip; (void) hc; (void) hk; (void) hv; (void) gc;
  (void) gk; (void) gv;
  callsFirst_++;
  return firstAnswer_;
}

static int32_t decide_second(int32_t method, const char *uri, const char *ip, uint32_t hc,
                             const char *const *hk, const char *const *hv, uint32_t gc,
                             const char *const *gk, const char *const *gv) {
  (void) method; (void) uri; (void) ip; (void) hc; (void) hk; (void) hv; (void) gc;
  (void) gk; (void) gv;
  callsSecond_++;
  return 0;                    /* Python now denies: only the memory can still allow */
}

static int32_t answer_of(uint8_t selector, uint8_t low, uint8_t high) {
  int32_t ms = (int32_t) (((uint32_t) high << 8) | low);
  switch (selector % 8) {
    case 0: return 0;
    case 1: return 1;
    case 2: return 2 + ms;
    case 3: return (2 + ms) | ANY_ARGUMENTS;
    case 4: return ANY_ARGUMENTS;                /* the flag alone: no decision */
    case 5: return -1 - ms;
    case 6: return (int32_t) (0x80000000u | ANY_ARGUMENTS | (uint32_t) ms);
    default: return 1 | ANY_ARGUMENTS;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (slots_ == NULL) {
    slots_ = calloc(SLOTS, sizeof(Slot));
  }
  if (size < 6) {
    return 0;
  }
  OrthancPluginHttpMethod method = (OrthancPluginHttpMethod) (1 + data[0] % 4);
  firstAnswer_ = answer_of(data[1], data[2], data[3]);
  uint32_t getFirst = data[4] % 3, getSecond = data[5] % 3;

  /* The rest as NUL-terminated strings (a copy, terminated). */
  size_t n = size - 6;
  char *text = malloc(n + 1);
  memcpy(text, data + 6, n);
  text[n] = '\0';
  const char *strings[1 + 2 * MAX_HEADERS];
  uint32_t count = 0;
  for (size_t at = 0; at <= n && count < 1 + 2 * MAX_HEADERS;) {
    strings[count++] = text + at;
    at += strlen(text + at) + 1;
  }
  const char *uri = strings[0];
  const char *keys[MAX_HEADERS], *values[MAX_HEADERS];
  uint32_t headers = (count - 1) / 2;
  for (uint32_t i = 0; i < headers; i++) {
    const char *k = strings[1 + 2 * i];
    keys[i] = strcmp(k, "\x01") == 0 ? "authorization" : strcmp(k, "\x02") == 0 ? "cookie" : k;
    values[i] = strings[2 + 2 * i];
  }
  const char *getKeys[2] = {"n", "studyUID"}, *getValues[2] = {"1", "1.2.3"};

  /* The parsers on their own: a credential lies inside one header value. */
  char kind = 0;
  size_t length = 0;
  const char *cred = credential(headers, keys, values, &kind, &length);
  if (cred != NULL) {
    int inside = 0;
    for (uint32_t i = 0; i < headers; i++) {
      size_t v = strlen(values[i]);
      inside |= cred >= values[i] && cred + length <= values[i] + v;
    }
    assert(inside && length > 0 && (kind == 's' || kind == 't'));
    char key[KEY_MAX];
    uint32_t k = make_key(key, uri, kind, cred, length);
    assert(k <= KEY_MAX);
    assert(k == 0 || (k == strlen(uri) + 3 + length && key[strlen(uri)] == '\n'));
  }

  /* The memory's promise: forget everything, ask once, then once more with Python denying. */
  OrthancNasGateClear();
  callsFirst_ = callsSecond_ = 0;
  decide_ = decide_first;
  int32_t first = filter(method, uri, "127.0.0.1", headers, keys, values, getFirst, getKeys,
                         getValues);
  assert(callsFirst_ == 1);
  int32_t stripped = firstAnswer_ > 0 ? (firstAnswer_ & ~ANY_ARGUMENTS) : firstAnswer_;
  assert(first == (stripped > 0 ? 1 : 0));
  decide_ = decide_second;
  int32_t second = filter(method, uri, "127.0.0.1", headers, keys, values, getSecond, getKeys,
                          getValues);
  if (callsSecond_ == 0) {      /* allowed from memory */
    int any = (firstAnswer_ & ANY_ARGUMENTS) != 0;
    assert(second == 1);
    assert(method == OrthancPluginHttpMethod_Get);
    assert(cred != NULL);
    assert(stripped >= 2);
    assert(getFirst == 0 || any);
    assert(getSecond == 0 || any);
  } else {
    assert(callsSecond_ == 1 && second == 0);
  }
  decide_ = NULL;
  free(text);
  return 0;
}
