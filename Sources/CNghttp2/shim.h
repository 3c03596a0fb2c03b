// Umbrella for the system library; see module.modulemap.
#pragma once
#include <nghttp2/nghttp2.h>
