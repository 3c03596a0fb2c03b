// Umbrella for the system library; see module.modulemap.
#pragma once
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
