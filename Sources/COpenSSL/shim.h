// Umbrella for OpenSSL; see module.modulemap. The static inline functions
// wrap macros Swift cannot call.
#pragma once
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>

static inline long COpenSSL_set_sni(SSL *s, const char *name) {
    return SSL_set_tlsext_host_name(s, name);
}

static inline long COpenSSL_min_tls12(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}
