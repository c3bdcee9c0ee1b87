import Foundation

/// Checks the global heap collections (`GCOL`, where HDF5 keeps variable-length strings) of an
/// HDF5 file before libhdf5 sees it.
///
/// libhdf5 1.10 walks a collection's objects with `p = begin + need`; a corrupt object with index
/// 0 and size 0 makes it loop forever, and a huge size makes it read past the collection. This
/// walk mirrors libhdf5's and refuses such collections, so a corrupt EMD file fails with an error
/// instead of hanging the reader. (Offsets and lengths are taken as 8 bytes, as in every EMD
/// writer's default superblock.)
enum HDF5GlobalHeapCheck {
    static let signature: [UInt8] = Array("GCOL".utf8)
    static let headerSize = 16       // "GCOL", version, 3 reserved, 8-byte collection size
    static let objectHeaderSize = 16 // index u16, references u16, 4 reserved, 8-byte size

    /// Object sizes of every collection: collection offset → object index → size.
    typealias Collections = [Int: [Int: Int]]

    /// Validates every collection and returns their objects.
    @discardableResult
    static func validate(_ bytes: [UInt8], file: String) throws -> Collections {
        let r = ByteReader(bytes: bytes, file: file)
        var i = 0
        let n = bytes.count
        var collections: Collections = [:]
        while i + headerSize <= n {
            // Find the next "GCOL" followed by version 1.
            guard bytes[i] == 0x47, bytes[i + 1] == 0x43, bytes[i + 2] == 0x4F, bytes[i + 3] == 0x4C,
                  bytes[i + 4] == 1 else { i += 1; continue }
            collections[i] = try check(collectionAt: i, r)
            i += 4
        }
        return collections
    }

    /// Checks the variable-length references (length u32, collection offset u64, object index
    /// u32) that point at a known object: the length may not exceed the object. libhdf5 1.10
    /// allocates and clears the stored length before it looks at the object, so a corrupt length
    /// costs up to 4 GiB. Bytes in `excluding` (raw image data) are not searched.
    static func checkReferences(_ bytes: [UInt8], _ collections: Collections, excluding: [Range<Int>],
                                file: String) throws {
        guard !collections.isEmpty else { return }
        let n = bytes.count
        var q = 4
        while q + 12 <= n {
            if let skip = excluding.first(where: { $0.contains(q) }) { q = max(q + 1, skip.upperBound); continue }
            var address = 0
            for k in stride(from: 7, through: 0, by: -1) { address = (address << 8) | Int(bytes[q + k]) }
            if let objects = collections[address] {
                var index = 0, length = 0
                for k in stride(from: 3, through: 0, by: -1) {
                    index = (index << 8) | Int(bytes[q + 8 + k])
                    length = (length << 8) | Int(bytes[q - 4 + k])
                }
                if index > 0, let size = objects[index], length > size {
                    throw MicrographError(file: file, reason: "variable-length value at offset \(q - 4) claims \(length) bytes, its global heap object (collection \(address), index \(index)) holds \(size)")
                }
            }
            q += 1
        }
    }

    static func check(collectionAt start: Int, _ r: ByteReader) throws -> [Int: Int] {
        let size = try r.u64(at: start + 8, "size of global heap collection at offset \(start)")
        guard size >= UInt64(headerSize), size <= UInt64(r.count - start) else {
            throw r.fail("global heap collection at offset \(start) has size \(size), outside the file (\(r.count) bytes)")
        }
        let end = start + Int(size)
        var p = start + headerSize
        var objects: [Int: Int] = [:]
        while p < end {
            if p + objectHeaderSize > end { break }  // too small for an object: free space
            let index = try r.u16(at: p, "global heap object index at offset \(p)")
            let objectSize = try r.u64(at: p + 8, "global heap object size at offset \(p)")
            guard objectSize <= UInt64(end - p) else {
                throw r.fail("global heap object at offset \(p) has size \(objectSize), past its collection's end at \(end)")
            }
            let s = Int(objectSize)
            let need = index > 0 ? objectHeaderSize + ((s + 7) & ~7) : s
            guard need > 0, need <= end - p else {
                throw r.fail("global heap object at offset \(p) (index \(index), size \(s)) is corrupt")
            }
            if index > 0 { objects[Int(index)] = s }
            p += need
        }
        return objects
    }
}
