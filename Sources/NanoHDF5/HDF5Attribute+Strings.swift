import CHDF5
import Foundation

extension HDF5Attribute {
    /// The attribute's strings, read through a memory type derived from the stored one (same
    /// character set and padding); nil when the attribute is not a string.
    ///
    /// Unlike `read()`, it checks the string type before reading and trims the padding.
    public func readStrings() throws -> [String]? {
        try file.locked {
            try withObject(file, objectPath) { oid -> [String]? in
                let aid = H5Aopen(oid, name, nf_h5p_default())
                guard aid >= 0 else { throw file.fail("cannot open attribute \(name) of \(objectPath)") }
                defer { H5Aclose(aid) }
                let tid = H5Aget_type(aid)
                guard tid >= 0 else { throw file.fail("cannot read the type of attribute \(name) of \(objectPath)") }
                defer { H5Tclose(tid) }
                guard H5Tget_class(tid) == H5T_STRING else { return nil }
                let sid = H5Aget_space(aid)
                guard sid >= 0 else { throw file.fail("cannot read the shape of attribute \(name) of \(objectPath)") }
                defer { H5Sclose(sid) }
                let n = H5Sget_simple_extent_npoints(sid)
                guard n >= 0, n <= 100_000 else { throw file.fail("attribute \(name) of \(objectPath) has a bad size") }
                if n == 0 { return [] }
                let mem = H5Tget_native_type(tid, H5T_DIR_ASCEND)
                guard mem >= 0 else { throw file.fail("attribute \(name) of \(objectPath) has an unreadable string type") }
                defer { H5Tclose(mem) }
                let what = "attribute \(name) of \(objectPath)"
                if H5Tis_variable_str(mem) > 0 {
                    var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: Int(n))
                    let st = ptrs.withUnsafeMutableBytes { H5Aread(aid, mem, $0.baseAddress!) }
                    guard st >= 0 else { throw file.fail("cannot read \(what)") }
                    defer { for p in ptrs { free(p) } }
                    return ptrs.map { $0.map { String(cString: $0) } ?? "" }
                }
                let size = H5Tget_size(mem)
                guard size > 0, size < 1 << 20 else { throw file.fail("\(what) has a bad string size") }
                var buf = [UInt8](repeating: 0, count: size * Int(n))
                let st = buf.withUnsafeMutableBytes { H5Aread(aid, mem, $0.baseAddress!) }
                guard st >= 0 else { throw file.fail("cannot read \(what)") }
                return (0..<Int(n)).map { i in
                    let s = buf[(i * size)..<((i + 1) * size)]
                    let end = s.firstIndex(of: 0) ?? s.endIndex
                    return String(decoding: s[s.startIndex..<end], as: UTF8.self)
                        .trimmingCharacters(in: .whitespaces)
                }
            }
        }
    }
}
