/*
 * Orthanc NAS gate: the HTTP filter in front of Orthanc, in C.
 *
 * Every decision is made by the Python plugin (orthanc_nas.app.App.decide), which attaches a
 * callback here at start. The gate only remembers the GET requests Python allowed and said may
 * be remembered: the (URI, credential) pair, until the expiry Python gave (at most 30 s,
 * never beyond the session's own limits) and until Python clears the memory (after any write to
 * the plugin's database that may change who may do what). A remembered request is allowed
 * without entering Python: on Python plugin 4.0 entering the interpreter costs more than
 * Orthanc's own answer to such a request.
 *
 * Orthanc passes the URI without its query string (the GET arguments come separately), so the
 * key never holds arguments. A request with arguments is allowed from memory only if Python
 * set ANY_ARGUMENTS when it remembered that URI: its decision looked at the path alone (a
 * viewer's `?n=...`, DICOMweb's `?includefield=...`). Without the flag, a request with
 * arguments always enters Python and is never remembered.
 *
 * Fails closed: before Python attached, or if the callback fails, the request is denied.
 * Nothing is remembered for a request whose credential is ambiguous (two session cookies, a
 * cookie and a bearer token, an unknown authorization scheme), too long, or not a GET.
 */

#include <orthanc/OrthancCPlugin.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 4096             /* remembered requests (a power of two) */
#define KEY_MAX 1024           /* longer URI + credential: never remembered */
#define TTL_MAX_MS 30000
#define SESSION_COOKIE "onas_session="
#define ANY_ARGUMENTS 0x40000000 /* in Python's answer: the decision holds for any arguments */

typedef int32_t (*Decide)(int32_t method, const char *uri, const char *ip,
                          uint32_t headersCount, const char *const *headersKeys,
                          const char *const *headersValues, uint32_t getCount,
                          const char *const *getKeys, const char *const *getValues);

typedef struct {
  uint32_t length;             /* 0: empty */
  int anyArguments;            /* Python's decision held for any GET arguments */
  uint64_t generation;
  double expires;              /* seconds, on the clock of now() */
  char key[KEY_MAX];
} Slot;

static Decide decide_ = NULL;
static Slot *slots_ = NULL;
static uint64_t generation_ = 1;
static pthread_mutex_t mutex_ = PTHREAD_MUTEX_INITIALIZER;
static const char *testClockFile_ = NULL;
static uint64_t remembered_ = 0, asked_ = 0;

/* Real time, plus the offset of the test clock when ORTHANC_NAS_TEST_CLOCK_FILE is set (as the
 * Python side reads it), so that both sides agree on expiries. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  double t = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
  if (testClockFile_ != NULL) {
    FILE *f = fopen(testClockFile_, "r");
    double offset = 0;
    if (f != NULL) {
      if (fscanf(f, "%lf", &offset) != 1) {
        offset = 0;
      }
      fclose(f);
    }
    t += offset;
  }
  return t;
}

static uint32_t hash(const char *key, uint32_t length) {
  uint32_t h = 2166136261u;    /* FNV-1a: only picks a slot; keys are compared in full */
  for (uint32_t i = 0; i < length; i++) {
    h = (h ^ (uint8_t) key[i]) * 16777619u;
  }
  return h & (SLOTS - 1);
}

/* The credential of the request, as the Python side would pick it; NULL when ambiguous. */
static const char *credential(uint32_t count, const char *const *keys,
                              const char *const *values, char *kind, size_t *length) {
  const char *found = NULL;
  int seen = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (strcmp(keys[i], "authorization") == 0) {
      if (strncmp(values[i], "Bearer ", 7) != 0) {
        return NULL;
      }
      found = values[i] + 7;
      *length = strlen(found);
      *kind = 't';
      seen++;
    } else if (strcmp(keys[i], "cookie") == 0) {
      const char *v = values[i];
      for (const char *p = strstr(v, SESSION_COOKIE); p != NULL;
           p = strstr(p + 1, SESSION_COOKIE)) {
        if (p != v && !(p >= v + 2 && p[-2] == ';' && p[-1] == ' ')) {
          return NULL;         /* "xonas_session=" or odd spacing: let Python decide */
        }
        found = p + strlen(SESSION_COOKIE);
        *length = strcspn(found, ";");
        *kind = 's';
        seen++;
      }
    }
  }
  return (seen == 1 && *length > 0) ? found : NULL;
}

/* "<uri>\n<kind>:<credential>" into key; 0 when it does not fit. */
static uint32_t make_key(char *key, const char *uri, char kind, const char *cred, size_t n) {
  size_t u = strlen(uri);
  if (u + n + 4 > KEY_MAX || memchr(uri, '\n', u) != NULL) {
    return 0;
  }
  memcpy(key, uri, u);
  key[u] = '\n';
  key[u + 1] = kind;
  key[u + 2] = ':';
  memcpy(key + u + 3, cred, n);
  return (uint32_t) (u + 3 + n);
}

static int32_t filter(OrthancPluginHttpMethod method, const char *uri, const char *ip,
                      uint32_t headersCount, const char *const *headersKeys,
                      const char *const *headersValues, uint32_t getCount,
                      const char *const *getKeys, const char *const *getValues) {
  char key[KEY_MAX];
  uint32_t length = 0;
  if (method == OrthancPluginHttpMethod_Get) {
    char kind = 0;
    size_t n = 0;
    const char *cred = credential(headersCount, headersKeys, headersValues, &kind, &n);
    if (cred != NULL) {
      length = make_key(key, uri, kind, cred, n);
    }
  }
  if (length > 0) {
    int hit = 0;
    pthread_mutex_lock(&mutex_);
    const Slot *slot = &slots_[hash(key, length)];
    if (slot->length == length && slot->generation == generation_ &&
        memcmp(slot->key, key, length) == 0 && (getCount == 0 || slot->anyArguments) &&
        now() < slot->expires) {
      hit = 1;
      remembered_++;
    }
    pthread_mutex_unlock(&mutex_);
    if (hit) {
      return 1;
    }
  }

  pthread_mutex_lock(&mutex_);
  Decide decide = decide_;
  uint64_t generation = generation_;
  asked_++;
  pthread_mutex_unlock(&mutex_);
  if (decide == NULL) {
    return 0;                  /* Python is not there (yet): deny */
  }
  int32_t answer = decide((int32_t) method, uri, ip, headersCount, headersKeys, headersValues,
                          getCount, getKeys, getValues);
  if (answer <= 0) {
    return 0;
  }
  int anyArguments = (answer & ANY_ARGUMENTS) != 0;
  answer &= ~ANY_ARGUMENTS;
  if (answer <= 0) {
    return 0;                  /* the flag alone is no decision */
  }
  if (answer >= 2 && length > 0 && (getCount == 0 || anyArguments)) {
    int32_t ttl = answer - 1 > TTL_MAX_MS ? TTL_MAX_MS : answer - 1;
    pthread_mutex_lock(&mutex_);
    if (generation == generation_) { /* nothing was cleared while Python decided */
      Slot *slot = &slots_[hash(key, length)];
      memcpy(slot->key, key, length);
      slot->length = length;
      slot->anyArguments = anyArguments;
      slot->generation = generation;
      slot->expires = now() + ttl / 1000.0;
    }
    pthread_mutex_unlock(&mutex_);
  }
  return 1;
}

/* ---- called by the Python plugin (ctypes) ----------------------------------------------- */

ORTHANC_PLUGINS_API void OrthancNasGateAttach(Decide decide) {
  pthread_mutex_lock(&mutex_);
  decide_ = decide;
  generation_++;
  pthread_mutex_unlock(&mutex_);
}

ORTHANC_PLUGINS_API void OrthancNasGateClear(void) {
  pthread_mutex_lock(&mutex_);
  generation_++;
  pthread_mutex_unlock(&mutex_);
}

ORTHANC_PLUGINS_API void OrthancNasGateStats(uint64_t *remembered, uint64_t *asked) {
  pthread_mutex_lock(&mutex_);
  *remembered = remembered_;
  *asked = asked_;
  pthread_mutex_unlock(&mutex_);
}

/* ---- the Orthanc plugin entry points ------------------------------------------------------ */

ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext *context) {
  if (OrthancPluginCheckVersion(context) == 0) {
    OrthancPluginLogError(context, "OrthancNAS gate: this Orthanc is too old");
    return -1;
  }
  slots_ = calloc(SLOTS, sizeof(Slot));
  if (slots_ == NULL) {
    return -1;
  }
  const char *clock = getenv("ORTHANC_NAS_TEST_CLOCK_FILE");
  testClockFile_ = (clock != NULL && clock[0] != '\0') ? clock : NULL;
  OrthancPluginRegisterIncomingHttpRequestFilter2(context, filter);
  OrthancPluginLogWarning(context, "OrthancNAS gate: loaded; every request is denied until "
                          "the Python plugin attaches");
  return 0;
}

ORTHANC_PLUGINS_API void OrthancPluginFinalize(void) {
  pthread_mutex_lock(&mutex_);
  decide_ = NULL;
  pthread_mutex_unlock(&mutex_);
}

ORTHANC_PLUGINS_API const char *OrthancPluginGetName(void) {
  return "orthanc-nas-gate";
}

ORTHANC_PLUGINS_API const char *OrthancPluginGetVersion(void) {
  return "1.0";
}
