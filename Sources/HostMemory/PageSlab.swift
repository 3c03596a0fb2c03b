/// A block of host memory cut into fixed-size pages, with bounds-checked
/// copies in and out. This is the KV-cache tier's only unsafe memory code:
/// the next steps (memfd-backed slabs shared with engines, pinned pages for
/// CUDA) replace the allocation here without changing the interface.
///
/// Ownership: the slab owns its memory and frees it in deinit. Threading:
/// not synchronized; the owning cache serializes access (its lock), which
/// is the invariant behind `@unchecked Sendable`.
public final class PageSlab: @unchecked Sendable {
    public let pageSize: Int
    public let pages: Int
    private let base: UnsafeMutableRawPointer

    /// Allocates `pages` pages of `pageSize` bytes, 4 KiB aligned, untouched
    /// (the kernel commits them on first write).
    public init(pageSize: Int, pages: Int) {
        precondition(pageSize > 0 && pages > 0)
        self.pageSize = pageSize
        self.pages = pages
        base = UnsafeMutableRawPointer.allocate(byteCount: pageSize * pages, alignment: 4096)
    }

    deinit { base.deallocate() }

    /// Copies exactly one page of bytes into page `index`.
    public func write(page index: Int, from bytes: [UInt8]) {
        precondition(index >= 0 && index < pages && bytes.count == pageSize, "page write out of bounds")
        bytes.withUnsafeBytes { src in
            (base + index * pageSize).copyMemory(from: src.baseAddress!, byteCount: pageSize)
        }
    }

    /// A copy of page `index`.
    public func read(page index: Int) -> [UInt8] {
        precondition(index >= 0 && index < pages, "page read out of bounds")
        let p = base + index * pageSize
        return [UInt8](unsafeUninitializedCapacity: pageSize) { buf, n in
            UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: p, byteCount: pageSize)
            n = pageSize
        }
    }
}
