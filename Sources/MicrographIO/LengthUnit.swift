import Foundation

/// Length units that microscope files store calibrations in.
public enum LengthUnit {
    /// How many nanometres one `unit` is (`m`, `µm`, `micron`, `nm`, `Å`, `A`, `pm`, …, and the
    /// Berkeley EMD spelling that ncempy writes and reads, `[n_m]`, `[u_m]`: brackets around, an
    /// underscore between prefix and unit); nil for reciprocal, pixel, angle, empty or unknown units.
    public static func nanometres(per unit: String) -> Double? {
        var u = unit.trimmingCharacters(in: .whitespacesAndNewlines)
        if u.hasPrefix("["), u.hasSuffix("]"), u.count >= 2 { u = String(u.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces) }
        switch u {
        case "m", "meter", "metre", "meters", "metres": return 1e9
        case "cm", "c_m": return 1e7
        case "mm", "m_m", "millimeter", "millimetre", "millimeters", "millimetres": return 1e6
        case "µm", "μm", "um", "u_m", "µ_m", "μ_m", "micron", "microns", "\\u00B5m", "\\u00b5m",
             "micrometer", "micrometre", "micrometers", "micrometres": return 1e3
        case "nm", "n_m", "nanometer", "nanometre", "nanometers", "nanometres": return 1
        case "Å", "A", "angstrom", "Angstrom", "angstroms", "Angstroms", "ang", "Ang": return 0.1
        case "pm", "p_m", "picometer", "picometre", "picometers", "picometres": return 1e-3
        default: return nil
        }
    }
}

/// Nanometres per one `unit` (see `LengthUnit.nanometres(per:)`).
public func nanometresPerUnit(_ unit: String) -> Double? { LengthUnit.nanometres(per: unit) }
