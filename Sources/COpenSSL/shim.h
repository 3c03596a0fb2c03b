// Umbrella for OpenSSL; see module.modulemap.
#pragma once
#include <openssl/ssl.h>
#include <openssl/err.h>
