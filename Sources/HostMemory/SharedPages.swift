internal import CSystem
import Glibc

/// Pages of shared memory: a memfd cut into fixed-size pages and mapped
/// read-write. The KV agent creates one (`init(name:pageSize:pages:)`) and
/// passes its descriptor to engines, which map the same memory
/// (`init(mapping:pageSize:pages:)`), so block data moves between an engine
/// and the cache without passing through a socket.
///
/// The memfd is sparse: a page costs memory only once written. Copies are
/// bounds-checked. Ownership: the object owns its mapping and descriptor and
/// releases both in deinit. Threading: copies to distinct pages may run
/// concurrently; the protocol above (reservations and leases) is what keeps
/// two parties off the same page, which is the invariant behind
/// `@unchecked Sendable`.
public final class SharedPages: @unchecked Sendable {
    public let pageSize: Int
    public let pages: Int
    /// The memfd, for passing to another process.
    public let fd: Int32
    private let base: UnsafeMutableRawPointer

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Creates and maps a new memfd of `pages` pages.
    public init(name: String, pageSize: Int, pages: Int) throws(Failure) {
        precondition(pageSize > 0 && pages > 0)
        let bytes = UInt64(pageSize) * UInt64(pages)
        let fd = csys_memfd(name, bytes)
        guard fd >= 0 else { throw Failure(description: "memfd_create of \(bytes) bytes failed: errno \(errno)") }
        self.pageSize = pageSize
        self.pages = pages
        self.fd = fd
        self.base = try Self.map(fd, bytes)
    }

    /// Maps a descriptor received from the agent; takes ownership of `fd`.
    public init(mapping fd: Int32, pageSize: Int, pages: Int) throws(Failure) {
        precondition(pageSize > 0 && pages > 0)
        let bytes = UInt64(pageSize) * UInt64(pages)
        var st = stat()
        guard fstat(fd, &st) == 0, UInt64(st.st_size) >= bytes else {
            close(fd)
            throw Failure(description: "shared pool descriptor is smaller than \(bytes) bytes")
        }
        self.pageSize = pageSize
        self.pages = pages
        self.fd = fd
        self.base = try Self.map(fd, bytes)
    }

    /// Maps `bytes` of `fd`; closes `fd` on failure.
    private static func map(_ fd: Int32, _ bytes: UInt64) throws(Failure) -> UnsafeMutableRawPointer {
        guard let p = csys_map_shared(fd, bytes) else {
            let e = errno
            close(fd)
            throw Failure(description: "mmap of \(bytes) bytes failed: errno \(e)")
        }
        return p
    }

    deinit {
        _ = csys_unmap(base, UInt64(pageSize) * UInt64(pages))
        close(fd)
    }

    /// Copies exactly one page of bytes into page `index`.
    public func write(page index: Int, from bytes: [UInt8]) {
        precondition(index >= 0 && index < pages && bytes.count == pageSize, "page write out of bounds")
        bytes.withUnsafeBytes { csys_copy(base + index * pageSize, $0.baseAddress!, pageSize) }
    }

    /// Copies page `index` into `buffer` (exactly one page long), reusing its storage.
    public func read(page index: Int, into buffer: inout [UInt8]) {
        precondition(index >= 0 && index < pages && buffer.count == pageSize, "page read out of bounds")
        buffer.withUnsafeMutableBytes { csys_copy($0.baseAddress!, base + index * pageSize, pageSize) }
    }

    /// CRC-32C of page `index`, read in place (no copy): what a block's
    /// checksum is computed and verified on.
    public func crc32c(page index: Int) -> UInt32 {
        precondition(index >= 0 && index < pages, "page checksum out of bounds")
        return csys_crc32c(0, base + index * pageSize, pageSize)
    }

    /// Copies `bytes` (at most one page) to the start of page `index`: the
    /// L2 cache server's slots hold blocks up to a page long.
    public func store(page index: Int, _ bytes: ArraySlice<UInt8>) {
        precondition(index >= 0 && index < pages && bytes.count <= pageSize, "page write out of bounds")
        bytes.withUnsafeBytes { src in
            if let p = src.baseAddress { csys_copy(base + index * pageSize, p, src.count) }
        }
    }

    /// Appends the first `count` bytes of page `index` to `out` (one copy,
    /// straight into a message being built).
    public func append(page index: Int, count: Int, to out: inout [UInt8]) {
        precondition(index >= 0 && index < pages && count >= 0 && count <= pageSize, "page read out of bounds")
        let src = base + index * pageSize
        out.append(contentsOf: UnsafeRawBufferPointer(start: src, count: count))
    }

    /// CRC-32C of the first `count` bytes of page `index`, read in place.
    public func crc32c(page index: Int, count: Int) -> UInt32 {
        precondition(index >= 0 && index < pages && count >= 0 && count <= pageSize, "page checksum out of bounds")
        return csys_crc32c(0, base + index * pageSize, count)
    }

    /// Inverts one byte of page `index` in place (fault injection: what a
    /// memory error would do to a stored block).
    public func flipByte(page index: Int, offset: Int) {
        precondition(index >= 0 && index < pages && offset >= 0 && offset < pageSize, "page flip out of bounds")
        let p = (base + index * pageSize + offset).assumingMemoryBound(to: UInt8.self)
        p.pointee = ~p.pointee
    }

    /// A copy of page `index`.
    public func read(page index: Int) -> [UInt8] {
        precondition(index >= 0 && index < pages, "page read out of bounds")
        return [UInt8](unsafeUninitializedCapacity: pageSize) { buf, n in
            csys_copy(buf.baseAddress!, base + index * pageSize, pageSize)
            n = pageSize
        }
    }
}

/// CRC-32C of block data (the checksum KV blocks carry to and from the L2
/// cache servers): the CPU's instruction where it has one.
public enum BlockChecksum {
    public static func crc32c(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { csys_crc32c(crc, $0.baseAddress, $0.count) }
    }

    public static func crc32c(_ bytes: ArraySlice<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { csys_crc32c(crc, $0.baseAddress, $0.count) }
    }

    /// The table path alone (tests, and to compare speeds).
    public static func crc32cSoftware(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { csys_crc32c_software(crc, $0.baseAddress, $0.count) }
    }

    public static var usesHardware: Bool { csys_crc32c_hardware() == 1 }
}
