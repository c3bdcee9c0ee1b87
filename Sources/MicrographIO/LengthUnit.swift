import Foundation

/// Length units that microscope files store calibrations in.
public enum LengthUnit {
    /// How many nanometres one `unit` is (`m`, `µm`, `micron`, `nm`, `n_m`, `Å`, `A`, `pm`, …);
    /// nil for reciprocal, pixel, empty or unknown units.
    public static func nanometres(per unit: String) -> Double? {
        switch unit.trimmingCharacters(in: .whitespacesAndNewlines) {
        case "m", "meter", "metre", "meters", "metres": return 1e9
        case "cm": return 1e7
        case "mm": return 1e6
        case "µm", "μm", "um", "micron", "microns", "\\u00B5m", "\\u00b5m", "micrometer", "micrometre": return 1e3
        case "nm", "n_m", "nanometer", "nanometre": return 1
        case "Å", "A", "angstrom", "Angstrom", "ang": return 0.1
        case "pm": return 1e-3
        default: return nil
        }
    }
}

/// Nanometres per one `unit` (see `LengthUnit.nanometres(per:)`).
public func nanometresPerUnit(_ unit: String) -> Double? { LengthUnit.nanometres(per: unit) }
