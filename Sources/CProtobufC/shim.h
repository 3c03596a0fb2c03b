// Umbrella for the system library; see module.modulemap.
#pragma once
#include <protobuf-c/protobuf-c.h>
