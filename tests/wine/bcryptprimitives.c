/* A stand-in for Windows' bcryptprimitives.dll, for Wine 8.0 only (Debian 12's Wine).
 *
 * Rust's standard library (1.78 and later) gets its random bytes from
 * bcryptprimitives.dll!ProcessPrng, which Windows 10 and 11 have and Wine 8.0 does not: without
 * it every Rust program fails to start under that Wine. This DLL gives ProcessPrng on top of
 * RtlGenRandom (advapi32's SystemFunction036, the system's CSPRNG, which Wine provides).
 *
 * Built and installed into the tests' own Wine prefix by tests/setup/wine.sh; never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Like Windows' own: fills the buffer and always returns TRUE. A failure of the system's random
 * source cannot be reported through this interface, so it ends the process instead of handing
 * out bytes that are not random. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            ExitProcess(0xC0000001u);
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
