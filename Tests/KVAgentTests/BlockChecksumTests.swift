import HostMemory
import Testing

/// CRC-32C as blocks carry it to and from L2: published vectors, the CPU
/// instruction equal to the table on every length and alignment, and the
/// in-place page checksum equal to the copied one.
@Suite struct BlockChecksumTests {
    @Test func publishedVectors() {
        // RFC 3720 (iSCSI) B.4 and the classic check value.
        #expect(BlockChecksum.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(BlockChecksum.crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(BlockChecksum.crc32c([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(BlockChecksum.crc32c(Array(0..<32)) == 0x46DD_794E)
        #expect(BlockChecksum.crc32c([]) == 0)
    }

    @Test func instructionAndTableAgreeOnEveryLengthAndOffset() {
        var g = SystemRandomNumberGenerator()
        let data = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &g) }
        for len in [0, 1, 7, 8, 9, 15, 16, 63, 64, 1000, 4095] {
            for off in 0..<9 where off + len <= data.count {
                let slice = Array(data[off..<(off + len)])
                #expect(BlockChecksum.crc32c(slice) == BlockChecksum.crc32cSoftware(slice), "len \(len) offset \(off)")
            }
        }
        // Continuing a checksum over two parts equals one pass.
        let a = Array(data[..<1234]), b = Array(data[1234...])
        #expect(BlockChecksum.crc32c(b, continuing: BlockChecksum.crc32c(a)) == BlockChecksum.crc32c(data))
        print("crc32c uses the CPU instruction: \(BlockChecksum.usesHardware)")
    }

    @Test func aPageIsChecksummedInPlace() throws {
        let pool = try SharedPages(name: "crc-test", pageSize: 4096, pages: 2)
        var g = SystemRandomNumberGenerator()
        let block = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &g) }
        pool.write(page: 1, from: block)
        #expect(pool.crc32c(page: 1) == BlockChecksum.crc32c(block))
        var flipped = block
        flipped[2048] ^= 0x01
        pool.write(page: 1, from: flipped)
        #expect(pool.crc32c(page: 1) != BlockChecksum.crc32c(block))  // one flipped bit is caught
    }
}
